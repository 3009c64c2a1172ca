package graph

import (
	"github.com/nsrun/nsrun/runtime"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// FromRecorder reads the topology a plan built (see runtime.Plan): links,
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
		for _, li := range links {
			l := Link{NS: ns, Name: li.Name, Kind: li.Kind, Master: li.Master}
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

// FromSteps reads the topology a lab's journal records: its namespaces,
// its links (a veth's peer, a stacked link's parent and mode), where moves
// took them, which bridge each was put in, and their addresses.
func FromSteps(steps []runtime.Step) Topology {
	var t Topology
	links := map[[2]string]*Link{}
	var order [][2]string
	add := func(l Link) {
		key := [2]string{l.NS, l.Name}
		if _, ok := links[key]; !ok {
			order = append(order, key)
		}
		links[key] = &l
	}
	for _, s := range steps {
		switch s.Op {
		case runtime.OpNetns:
			t.Namespaces = append(t.Namespaces, s.Name)
		case runtime.OpLink:
			add(Link{NS: s.NS, Name: s.Name, Kind: s.Kind, PeerNS: s.PeerNS, PeerName: s.PeerName, ParentNS: s.ParentNS, Parent: s.Parent, Mode: s.Mode})
			if s.PeerName != "" {
				add(Link{NS: s.PeerNS, Name: s.PeerName, Kind: s.Kind, PeerNS: s.NS, PeerName: s.Name})
			}
		case runtime.OpMove:
			from, to := [2]string{s.NS, s.Name}, [2]string{s.New, s.Name}
			l, ok := links[from]
			if !ok {
				continue
			}
			delete(links, from)
			l.NS = s.New
			l.Addrs, l.Master = nil, "" // a move takes neither along
			links[to] = l
			order = append(order, to)
			if l.PeerName != "" {
				if p, ok := links[[2]string{l.PeerNS, l.PeerName}]; ok {
					p.PeerNS = s.New
				}
			}
			for _, c := range links { // links stacked on it follow it
				if c.ParentNS == s.NS && c.Parent == s.Name {
					c.ParentNS = s.New
				}
			}
		case runtime.OpMaster:
			if l, ok := links[[2]string{s.NS, s.Name}]; ok {
				l.Master = s.New
			}
		case runtime.OpAddr:
			if l, ok := links[[2]string{s.NS, s.Name}]; ok {
				l.Addrs = append(l.Addrs, s.Addr)
			}
		}
	}
	seen := map[[2]string]bool{}
	for _, key := range order {
		l, ok := links[key]
		if !ok || seen[key] {
			continue
		}
		seen[key] = true
		t.Links = append(t.Links, *l)
	}
	return t
}
