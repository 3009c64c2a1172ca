package graph

import (
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
)

// FromRecorder reads the topology a plan built (see engine.Plan): links,
// masters, veth peers, stacked links' parents and modes, and addresses, from
// the recorder's model.
func FromRecorder(rec *kernel.Recorder) (Topology, error) {
	t := Topology{Namespaces: rec.Namespaces()}
	for _, ns := range append([]string{kernel.Host}, t.Namespaces...) {
		links, err := rec.Links(ns)
		if err != nil {
			return Topology{}, err
		}
		addrs, err := rec.Addrs(ns)
		if err != nil {
			return Topology{}, err
		}
		shapes, err := rec.Shapes(ns)
		if err != nil {
			return Topology{}, err
		}
		for _, li := range links {
			l := Link{NS: ns, Name: li.Name, Kind: li.Kind, Master: li.Master, Shape: shapes[li.Name].String()}
			l.PeerNS, l.PeerName, _ = rec.Peer(ns, li.Name)
			l.ParentNS, l.Parent, l.Mode, _ = rec.Parent(ns, li.Name)
			for _, a := range addrs {
				if a.Dev == li.Name {
					l.Addrs = append(l.Addrs, a.Prefix)
				}
			}
			t.Links = append(t.Links, l)
		}
	}
	return t, nil
}

// FromSteps reads the topology a lab's journal records (see
// model.State): its namespaces, its links (a veth's peer, a stacked
// link's parent and mode), where moves took them, which bridge each was put
// in, and their addresses.
func FromSteps(steps []journal.Step) Topology {
	st := model.Replay(steps, true)
	t := Topology{}
	for _, n := range st.Netns {
		t.Namespaces = append(t.Namespaces, n.Name)
	}
	for _, l := range st.InOrder() {
		g := Link{NS: l.At.NS, Name: l.At.Name, Kind: l.Kind, ParentNS: l.ParentNS, Parent: l.Parent, Mode: l.Mode, Master: l.Master, Addrs: l.Addrs, Shape: l.Shape}
		if l.Peer != nil {
			g.PeerNS, g.PeerName = l.Peer.At.NS, l.Peer.At.Name
		}
		t.Links = append(t.Links, g)
	}
	t.Place(steps)
	return t
}

// Place marks, for a lab across machines, each namespace and each link of
// a host namespace with its machine, and each veth across machines with
// its VNI, from the steps that made them (a plan's or a lab's journal).
// Nothing changes for a lab on one machine.
func (t *Topology) Place(steps []journal.Step) {
	type key struct{ ns, name string }
	on, vni := map[key]string{}, map[key]int{}
	for _, s := range steps {
		switch {
		case s.Op == journal.OpPart && t.Coordinator == "":
			t.Coordinator = s.On
		case s.Op == journal.OpNetns && s.On != "":
			if t.Machines == nil {
				t.Machines = map[string]string{}
			}
			t.Machines[s.Name] = s.On
		case s.Op == journal.OpLink && s.On != "":
			on[key{s.NS, s.Name}] = s.On
			if s.PeerName != "" {
				on[key{s.PeerNS, s.PeerName}] = s.On // a veth's ends are on one machine
			}
			if s.VNI != 0 {
				vni[key{s.NS, s.Name}] = s.VNI
			}
		case s.Op == journal.OpMove && s.On != "":
			on[key{s.New, s.Name}] = s.On
		}
	}
	if len(on) == 0 && t.Machines == nil {
		return
	}
	if t.Machines == nil {
		t.Machines = map[string]string{}
	}
	for i := range t.Links {
		l := &t.Links[i]
		k := key{l.NS, l.Name}
		if l.NS == kernel.Host {
			l.Machine = on[k]
		}
		l.Across = vni[k]
	}
}
