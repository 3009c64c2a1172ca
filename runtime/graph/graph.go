package graph

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// Topology is what a drawing is made from: the lab's namespaces and links,
// wherever they were read from (a plan's model, a lab's journal).
type Topology struct {
	Namespaces []string // the lab's namespaces; kernel.Host is implied
	Links      []Link
	// Machines, for a lab across machines, gives each namespace's
	// machine (see Place); nil for a lab on one. Coordinator is the
	// machine of the run that drives the others: its group is drawn first.
	Machines    map[string]string
	Coordinator string
}

// Link is a link of the lab, where it is now.
type Link struct {
	NS, Name, Kind string
	Master         string // the bridge (in NS) it is a port of; "" if none
	// A veth's other end.
	PeerNS, PeerName string
	// A macvlan's, macvtap's or vlan's parent, and its mode ("bridge", ...;
	// a vlan's id). Parent is "" when the source does not know it.
	ParentNS, Parent, Mode string
	Addrs                  []netip.Prefix
	// Shape is how what it sends is shaped (see kernel.Shape), "" if not.
	Shape string
	// Machine is, in a lab across machines, the machine of a link of the
	// host namespace (which each machine has its own of).
	Machine string
	// Across is the VNI of a veth across machines, each end a vxlan on
	// its machine; 0 for any other link.
	Across int
}

// The kinds of nodes.
const (
	KindHost   = "host"
	KindNetns  = "netns"
	KindBridge = "bridge"
)

// Node is a namespace or a bridge.
type Node struct {
	ID    string   // unique, [A-Za-z0-9_] only: usable in Mermaid and DOT as is
	Kind  string   // KindHost, KindNetns or KindBridge
	Label []string // lines: the name, then what it holds that is not an edge
	// Machine is, in a lab across machines, the machine the node is on:
	// the drawing groups each machine's nodes.
	Machine string
}

// Edge is a link between two nodes (a veth pair is one edge). Dashed edges
// tie a bridge to the namespace that holds it.
type Edge struct {
	From, To string // node IDs
	Label    string
	Dashed   bool
}

// Graph is a drawing's content, in the order it is drawn.
type Graph struct {
	Nodes []Node
	Edges []Edge
	// Machines are the machines of a lab across machines, in the order
	// their groups are drawn (the coordinator's first); nil for a lab on
	// one machine.
	Machines []string
	// Partial, if set, says why the drawing shows only part of the lab (a
	// plan that could not go on); the drawing says so.
	Partial string
}

// Build lays a topology out as a graph: the host (when it holds links of
// the lab), the namespaces by name, then the bridges by namespace and name;
// edges sorted by their ends and label. Loopbacks are left out. In a lab
// across machines each machine's host namespace is a node of its own, and
// a veth across machines is one edge, drawn with its VNI.
func Build(t Topology) *Graph {
	// A link's place is its namespace, or for one of a machine's host
	// namespace "@" and the machine.
	place := func(ns, machine string) string {
		if ns == kernel.Host && machine != "" {
			return "@" + machine
		}
		return ns
	}
	machineOf := func(l *Link) string {
		if l.NS == kernel.Host {
			return l.Machine
		}
		return t.Machines[l.NS]
	}
	links := map[[2]string]*Link{}
	for i := range t.Links {
		l := &t.Links[i]
		if l.Kind != "loopback" && l.Name != "lo" {
			links[[2]string{place(l.NS, l.Machine), l.Name}] = l
		}
	}
	g := &Graph{}
	extra := map[string][]string{} // node ID -> label lines of links drawn in it
	var edges []Edge
	seenPair := map[[2]string]bool{}
	hosts := map[string]bool{} // the places of host namespaces used
	at := func(l *Link) string { return place(l.NS, machineOf(l)) }
	home := func(l *Link) string {
		p := at(l)
		if l.NS == kernel.Host {
			hosts[p] = true
		}
		return nsID(p)
	}
	endpoint := func(l *Link) string {
		if l.Master != "" {
			if br, ok := links[[2]string{at(l), l.Master}]; ok && br.Kind == "bridge" {
				home(l)
				return bridgeID(at(l), l.Master)
			}
		}
		return home(l)
	}
	across := map[int][]*Link{} // a veth across machines: its ends, by VNI
	for _, key := range sortedKeys(links) {
		l := links[key]
		switch {
		case l.Kind == "bridge":
			edges = append(edges, Edge{From: home(l), To: bridgeID(at(l), l.Name), Dashed: true})
		case l.Kind == "veth" && l.PeerName != "":
			peerKey := [2]string{place(l.PeerNS, machineOf(l)), l.PeerName} // both ends on one machine
			if seenPair[key] {
				continue
			}
			seenPair[key], seenPair[peerKey] = true, true
			label := describe(l)
			var to string
			if p, ok := links[peerKey]; ok {
				label += " -- " + describe(p)
				to = endpoint(p)
			} else {
				if l.PeerNS == kernel.Host {
					hosts[peerKey[0]] = true
				}
				to = nsID(peerKey[0])
			}
			edges = append(edges, Edge{From: endpoint(l), To: to, Label: label})
		case l.Kind == "vxlan" && l.Across != 0:
			across[l.Across] = append(across[l.Across], l)
		case l.Kind == "vxlan": // a tunnel: drawn where it is, with its VNI and VTEPs
			label := "vxlan " + describe(l)
			if l.Mode != "" {
				label += " (" + l.Mode + ")"
			}
			if to := endpoint(l); to != home(l) {
				edges = append(edges, Edge{From: home(l), To: to, Label: label})
			} else {
				extra[to] = append(extra[to], label)
			}
		case l.Parent != "":
			label := l.Kind + " " + l.Mode
			if l.Mode == "" {
				label = l.Kind
			}
			label = strings.TrimSpace(label) + ": " + describe(l) + " on " + l.Parent
			parent := place(l.ParentNS, machineOf(l))
			if l.ParentNS == kernel.Host {
				hosts[parent] = true
			}
			edges = append(edges, Edge{From: endpoint(l), To: nsID(parent), Label: label})
		case l.Master != "" && endpoint(l) != home(l):
			edges = append(edges, Edge{From: home(l), To: endpoint(l), Label: l.Kind + " " + describe(l)})
		default: // a link no edge shows: listed in its namespace's node
			id := home(l)
			extra[id] = append(extra[id], l.Kind+" "+describe(l))
		}
	}
	for _, vni := range slices.Sorted(maps.Keys(across)) {
		ends := across[vni]
		label := fmt.Sprintf("vxlan %d: ", vni)
		if len(ends) != 2 { // a plan that ended between the two
			for _, l := range ends {
				id := home(l)
				extra[id] = append(extra[id], label+describe(l))
			}
			continue
		}
		a, b := ends[0], ends[1] // in the order of sortedKeys
		edges = append(edges, Edge{From: endpoint(a), To: endpoint(b), Label: label + describe(a) + " -- " + describe(b)})
	}

	hostPlaces := make([]string, 0, len(hosts))
	for p := range hosts {
		hostPlaces = append(hostPlaces, p)
	}
	slices.Sort(hostPlaces) // the coordinator's (kernel.Host, "") first
	for _, p := range hostPlaces {
		id := nsID(p)
		g.Nodes = append(g.Nodes, Node{ID: id, Kind: KindHost, Label: append([]string{"host"}, extra[id]...), Machine: strings.TrimPrefix(p, "@")})
	}
	nss := slices.Clone(t.Namespaces)
	slices.Sort(nss)
	for _, ns := range slices.Compact(nss) {
		if ns == kernel.Host {
			continue
		}
		g.Nodes = append(g.Nodes, Node{ID: nsID(ns), Kind: KindNetns, Label: append([]string{ns}, extra[nsID(ns)]...), Machine: t.Machines[ns]})
	}
	for _, key := range sortedKeys(links) {
		if l := links[key]; l.Kind == "bridge" {
			label := []string{l.Name}
			if a := addrs(l); a != "" {
				label = append(label, a)
			}
			g.Nodes = append(g.Nodes, Node{ID: bridgeID(key[0], l.Name), Kind: KindBridge, Label: label, Machine: machineOf(l)})
		}
	}
	if t.Machines != nil {
		seen := map[string]bool{}
		for _, n := range g.Nodes {
			if !seen[n.Machine] {
				seen[n.Machine] = true
				g.Machines = append(g.Machines, n.Machine)
			}
		}
		slices.Sort(g.Machines)
		if i := slices.Index(g.Machines, t.Coordinator); i > 0 {
			g.Machines = append(append([]string{t.Coordinator}, g.Machines[:i]...), g.Machines[i+1:]...)
		}
	}
	slices.SortFunc(edges, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.Label, b.Label))
	})
	g.Edges = slices.Compact(edges)
	return g
}

func sortedKeys(m map[[2]string]*Link) [][2]string {
	keys := make([][2]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	return keys
}

// describe names a link with its addresses and shaping:
// "veth1 10.0.0.1/24 fd00::1/64 [tbf rate 50mbit burst 62500b latency 50ms]".
func describe(l *Link) string {
	s := l.Name
	if a := addrs(l); a != "" {
		s += " " + a
	}
	if l.Shape != "" {
		s += " [" + l.Shape + "]"
	}
	return s
}

func addrs(l *Link) string {
	s := make([]string, len(l.Addrs))
	for i, a := range l.Addrs {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

// nsID and bridgeID make node IDs that no two objects share: names are
// escaped so that they hold no '_', which then separates them. A place is
// a namespace, or "@" and a machine for that machine's host namespace.
func nsID(place string) string {
	if place == kernel.Host {
		return "host"
	}
	if m, ok := strings.CutPrefix(place, "@"); ok {
		return "host__" + escape(m)
	}
	return "ns_" + escape(place)
}

func bridgeID(place, name string) string {
	if m, ok := strings.CutPrefix(place, "@"); ok {
		return "br__" + escape(m) + "__" + escape(name)
	}
	return "br_" + escape(kernel.NSArg(place)) + "__" + escape(name)
}

// escape keeps letters and digits and writes any other byte as _XX (hex).
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return b.String()
}
