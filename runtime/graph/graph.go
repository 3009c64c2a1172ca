package graph

import (
	"cmp"
	"fmt"
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
	// Partial, if set, says why the drawing shows only part of the lab (a
	// plan that could not go on); the drawing says so.
	Partial string
}

// Build lays a topology out as a graph: the host (when it holds links of
// the lab), the namespaces by name, then the bridges by namespace and name;
// edges sorted by their ends and label. Loopbacks are left out.
func Build(t Topology) *Graph {
	links := map[[2]string]*Link{}
	for i := range t.Links {
		l := &t.Links[i]
		if l.Kind != "loopback" && l.Name != "lo" {
			links[[2]string{l.NS, l.Name}] = l
		}
	}
	g := &Graph{}
	extra := map[string][]string{} // node ID -> label lines of links drawn in it
	var edges []Edge
	seenPair := map[[2]string]bool{}
	hostUsed := false
	endpoint := func(l *Link) string {
		if l.NS == kernel.Host {
			hostUsed = true
		}
		if l.Master != "" {
			if br, ok := links[[2]string{l.NS, l.Master}]; ok && br.Kind == "bridge" {
				return bridgeID(l.NS, l.Master)
			}
		}
		return nsID(l.NS)
	}
	for _, key := range sortedKeys(links) {
		l := links[key]
		switch {
		case l.Kind == "bridge":
			if l.NS == kernel.Host {
				hostUsed = true
			}
			edges = append(edges, Edge{From: nsID(l.NS), To: bridgeID(l.NS, l.Name), Dashed: true})
		case l.Kind == "veth" && l.PeerName != "":
			peerKey := [2]string{l.PeerNS, l.PeerName}
			if seenPair[key] {
				continue
			}
			seenPair[key], seenPair[peerKey] = true, true
			label := describe(l)
			to := nsID(l.PeerNS)
			if p, ok := links[peerKey]; ok {
				label += " -- " + describe(p)
				to = endpoint(p)
			} else if l.PeerNS == kernel.Host {
				hostUsed = true
			}
			edges = append(edges, Edge{From: endpoint(l), To: to, Label: label})
		case l.Kind == "vxlan": // a tunnel: drawn where it is, with its VNI and VTEPs
			label := "vxlan " + describe(l)
			if l.Mode != "" {
				label += " (" + l.Mode + ")"
			}
			if to := endpoint(l); to != nsID(l.NS) {
				edges = append(edges, Edge{From: nsID(l.NS), To: to, Label: label})
			} else {
				extra[to] = append(extra[to], label)
			}
		case l.Parent != "":
			label := l.Kind + " " + l.Mode
			if l.Mode == "" {
				label = l.Kind
			}
			label = strings.TrimSpace(label) + ": " + describe(l) + " on " + l.Parent
			if l.ParentNS == kernel.Host {
				hostUsed = true
			}
			edges = append(edges, Edge{From: endpoint(l), To: nsID(l.ParentNS), Label: label})
		case l.Master != "" && endpoint(l) != nsID(l.NS):
			edges = append(edges, Edge{From: nsID(l.NS), To: endpoint(l), Label: l.Kind + " " + describe(l)})
		default: // a link no edge shows: listed in its namespace's node
			if l.NS == kernel.Host {
				hostUsed = true
			}
			id := nsID(l.NS)
			extra[id] = append(extra[id], l.Kind+" "+describe(l))
		}
	}

	if hostUsed {
		g.Nodes = append(g.Nodes, Node{ID: nsID(kernel.Host), Kind: KindHost, Label: append([]string{"host"}, extra[nsID(kernel.Host)]...)})
	}
	nss := slices.Clone(t.Namespaces)
	slices.Sort(nss)
	for _, ns := range slices.Compact(nss) {
		if ns == kernel.Host {
			continue
		}
		g.Nodes = append(g.Nodes, Node{ID: nsID(ns), Kind: KindNetns, Label: append([]string{ns}, extra[nsID(ns)]...)})
	}
	for _, key := range sortedKeys(links) {
		if l := links[key]; l.Kind == "bridge" {
			label := []string{l.Name}
			if a := addrs(l); a != "" {
				label = append(label, a)
			}
			g.Nodes = append(g.Nodes, Node{ID: bridgeID(l.NS, l.Name), Kind: KindBridge, Label: label})
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
// escaped so that they hold no '_', which then separates them.
func nsID(ns string) string {
	if ns == kernel.Host {
		return "host"
	}
	return "ns_" + escape(ns)
}

func bridgeID(ns, name string) string {
	return "br_" + escape(kernel.NSArg(ns)) + "__" + escape(name)
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
