package graph

import (
	"strings"

	"github.com/nsrun/nsrun/runtime"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// FromRecorder reads the topology a plan built (see runtime.Plan): links,
// masters, veth peers and addresses from the recorder's model; the parent
// and mode of macvlans, macvtaps and vlans, which the model does not keep,
// from the commands in its log.
func FromRecorder(rec *kernel.Recorder) (Topology, error) {
	t := Topology{Namespaces: rec.Namespaces()}
	stacked := stackedLinks(rec.Log)
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
			if s, ok := stacked[[2]string{ns, li.Name}]; ok {
				l.ParentNS, l.Parent, l.Mode = s.ParentNS, s.Parent, s.Mode
			}
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

// stackedLinks follows a recorder's log for the links made on a parent
// (`ip [-n NS] link add NAME link PARENT [netns TO] type KIND mode M|id N`),
// through moves and deletions, and returns them by where they are at the
// end. Where is kept as (namespace, name); "host" in a command is the host.
func stackedLinks(log []string) map[[2]string]Link {
	at := map[[2]string]Link{}
	nsOf := func(s string) string {
		if s == "host" {
			return kernel.Host
		}
		return s
	}
	for _, line := range log {
		f := strings.Fields(line)
		ns := kernel.Host
		if len(f) >= 3 && f[0] == "ip" && f[1] == "-n" {
			ns, f = f[2], append([]string{"ip"}, f[3:]...)
		}
		arg := func(key string) string { // after "ip link add NAME"
			for i := 4; i+1 < len(f); i++ {
				if f[i] == key {
					return f[i+1]
				}
			}
			return ""
		}
		switch {
		case len(f) >= 4 && f[0] == "ip" && f[1] == "netns" && f[2] == "del":
			for k := range at {
				if k[0] == f[3] {
					delete(at, k)
				}
			}
		case len(f) >= 4 && f[0] == "ip" && f[1] == "link" && f[2] == "add":
			name := f[3]
			delete(at, [2]string{ns, name})
			parent := arg("link")
			if parent == "" {
				continue
			}
			l := Link{NS: ns, Name: name, Kind: arg("type"), ParentNS: ns, Parent: parent, Mode: arg("mode")}
			if id := arg("id"); id != "" {
				l.Mode = id
			}
			if to := arg("netns"); to != "" {
				l.NS = nsOf(to)
			}
			at[[2]string{l.NS, name}] = l
		case len(f) >= 4 && f[0] == "ip" && f[1] == "link" && f[2] == "del":
			delete(at, [2]string{ns, f[3]})
		case len(f) >= 6 && f[0] == "ip" && f[1] == "link" && f[2] == "set" && f[4] == "netns":
			from, to := [2]string{ns, f[3]}, [2]string{nsOf(f[5]), f[3]}
			if l, ok := at[from]; ok {
				delete(at, from)
				l.NS = to[0]
				at[to] = l
			}
			for k, l := range at {
				if l.ParentNS == from[0] && l.Parent == from[1] {
					l.ParentNS = to[0]
					at[k] = l
				}
			}
		}
	}
	return at
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
