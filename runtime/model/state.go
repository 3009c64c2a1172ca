package model

import (
	"net/netip"
	"slices"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// HostLinks reports whether the lab has links in the host namespace.
func (st *State) HostLinks() bool {
	for _, l := range st.Links {
		if l.At.NS == kernel.Host && l.Removed < 0 {
			return true
		}
	}
	return false
}

// A State is what a lab consists of by its steps — a journal's or a
// plan's — replayed in order: the namespaces it made, its links where they
// are now (after their moves), with their veth peers, parents, masters and
// addresses, and which link each change is about. It is the one model of a
// lab: the run's ownership checks, the undo's plan, inspect, check and the
// graph all read it.
type State struct {
	Netns []*Netns // in the order made
	Links []*Link  // the links the steps made, in the order made

	// Of holds, by step index, the link a change is about (a move, an
	// address, a link setting; a route through a link), as the link was
	// when the change was made.
	Of map[int]*Link

	netns       map[string]*Netns
	routes      map[string][]kernel.Route // the lab's routes, by namespace, as they are now
	at          map[LinkKey]*Link         // where each link is now
	born        map[LinkKey]*Link         // where each link made was made
	order       []LinkKey                 // where links were made or moved to, in order (see InOrder)
	withIntents bool
}

// LinkKey is where a link is: its namespace and name.
type LinkKey struct{ NS, Name string }

// Netns is a namespace the steps made.
type Netns struct {
	Name string
	Step int // the index of the step that made it
}

// Link is a link, by the steps.
type Link struct {
	At    LinkKey
	Born  LinkKey // where it was made
	Kind  string
	Alias string // the lab's tag, which it carries unless Untagged
	MAC   string // the MAC it was made with
	// Untagged is a veth end born in a namespace of the lab's, which has
	// no tag of its own (the namespace's vouches for it): it is known by
	// its MAC.
	Untagged bool
	Peer     *Link

	ParentNS, Parent, Mode string // a macvlan's, macvtap's or vlan's parent, and mode
	Master                 string
	Addrs                  []netip.Prefix // added since it was made or last moved
	Shape                  string         // its shaping (see kernel.Shape), "" none

	Made    int // the index of the step that made it; -1 for a link it did not make
	Moved   int // the index of its last move; -1 if none
	Removed int // the index of the step that removed it; -1 if none
	// Maybe holds where a move whose outcome is unknown (an intent) may
	// have put it: such a move leaves the link where it was.
	Maybe []LinkKey
}

// Fingerprint is how the link is known as the lab's (see kernel.Fingerprint).
func (l *Link) Fingerprint() kernel.Fingerprint {
	return kernel.Fingerprint{Alias: l.Alias, MAC: l.MAC}
}

// Replay replays steps. Unless intents, the steps whose outcome is
// unknown (a run died between their intent and their done record) are left
// out, as if never made; with intents they are taken as made, but a move
// whose outcome is unknown leaves its link where it was (see Maybe).
func Replay(steps []journal.Step, intents bool) *State {
	st := Sized(intents, len(steps))
	for i, s := range steps {
		st.Apply(i, s)
	}
	return st
}

// New returns an empty state, to which steps are applied in order
// (see Replay).
func New(intents bool) *State { return Sized(intents, 0) }

// Sized is New, with room for about n steps: a big lab's model is not
// grown as it is made.
func Sized(intents bool, n int) *State {
	// A lab's steps are mostly about a link; it has about a link for
	// every four, and a namespace for every eight (a host: a namespace,
	// a veth pair, its settings and addresses).
	return &State{Of: make(map[int]*Link, n), netns: make(map[string]*Netns, n/8), routes: map[string][]kernel.Route{},
		at: make(map[LinkKey]*Link, n/4), born: make(map[LinkKey]*Link, n/4), withIntents: intents}
}

// Apply applies step i.
func (st *State) Apply(i int, s journal.Step) {
	if s.State == journal.StateIntent && !st.withIntents {
		return
	}
	switch s.Op {
	case journal.OpNetns:
		n := &Netns{Name: s.Name, Step: i}
		st.Netns = append(st.Netns, n)
		st.netns[s.Name] = n
	case journal.OpNetnsDel:
		// Gone, with what was left in it (its links went before it):
		// its name is free.
		if s.State == journal.StateIntent {
			return // it may be there still: the undo makes sure
		}
		if n, ok := st.netns[s.Name]; ok {
			delete(st.netns, s.Name)
			st.Netns = slices.DeleteFunc(st.Netns, func(m *Netns) bool { return m == n })
		}
		delete(st.routes, s.Name)
		for k, l := range st.at {
			if k.NS == s.Name && l.Made < 0 {
				delete(st.at, k)
			}
		}
	case journal.OpLink:
		a := &Link{At: LinkKey{s.NS, s.Name}, Born: LinkKey{s.NS, s.Name}, Kind: s.Kind, Alias: s.Alias, MAC: s.MAC,
			ParentNS: s.ParentNS, Parent: s.Parent, Mode: s.Mode, Made: i, Moved: -1, Removed: -1}
		st.made(a)
		st.Of[i] = a
		if s.PeerName != "" {
			b := &Link{At: LinkKey{s.PeerNS, s.PeerName}, Born: LinkKey{s.PeerNS, s.PeerName}, Kind: s.Kind, Alias: s.Alias, Made: i, Moved: -1, Removed: -1, Peer: a}
			if s.PeerMAC != "" { // born untagged: known by its MAC
				b.Untagged, b.MAC = true, s.PeerMAC
			}
			a.Peer = b
			st.made(b)
		}
	case journal.OpMove:
		l := st.link(LinkKey{s.NS, s.Name})
		st.Of[i] = l
		if s.State == journal.StateIntent {
			l.Maybe = append(l.Maybe, LinkKey{s.New, s.Name})
			return
		}
		from := l.At
		delete(st.at, from)
		l.At, l.Moved = LinkKey{s.New, s.Name}, i
		l.Addrs, l.Master, l.Shape = nil, "", "" // a move takes none along, nor the routes through it
		st.routes[from.NS] = slices.DeleteFunc(st.routes[from.NS], func(r kernel.Route) bool { return r.Dev == from.Name })
		st.place(l)
		for _, c := range st.Links { // links stacked on it follow it
			if c.ParentNS == from.NS && c.Parent == from.Name {
				c.ParentNS = s.New
			}
		}
	case journal.OpMaster:
		l := st.link(LinkKey{s.NS, s.Name})
		l.Master = s.New
		st.Of[i] = l
	case journal.OpAddr:
		l := st.link(LinkKey{s.NS, s.Name})
		l.Addrs = append(l.Addrs, s.Addr)
		st.Of[i] = l
	case journal.OpAddrDel:
		l := st.link(LinkKey{s.NS, s.Name})
		l.Addrs = slices.DeleteFunc(l.Addrs, func(p netip.Prefix) bool { return p == s.Addr })
		st.Of[i] = l
		if s.Was != nil && s.State != journal.StateIntent { // the routes the kernel dropped with it
			for _, e := range s.Was.Ends {
				for _, r := range e.Routes {
					key := r.Key()
					st.routes[e.NS] = slices.DeleteFunc(st.routes[e.NS], func(r kernel.Route) bool { return r.Key() == key })
				}
			}
		}
	case journal.OpLinkDel:
		// Gone, with its peer: its names are free; its ports are no
		// one's; the routes through it went with it.
		l := st.link(LinkKey{s.NS, s.Name})
		st.Of[i] = l
		if s.State == journal.StateIntent {
			return // it may be there still: the undo makes sure
		}
		if s.Was != nil { // the routes through it, by the kernel's choice of device too
			for _, e := range s.Was.Ends {
				for _, r := range e.Routes {
					key := r.Key()
					st.routes[e.NS] = slices.DeleteFunc(st.routes[e.NS], func(r kernel.Route) bool { return r.Key() == key })
				}
			}
		}
		for _, end := range []*Link{l, l.Peer} {
			if end == nil {
				continue
			}
			end.Removed = i
			if st.at[end.At] == end {
				delete(st.at, end.At)
			}
			st.routes[end.At.NS] = slices.DeleteFunc(st.routes[end.At.NS], func(r kernel.Route) bool { return r.Dev == end.At.Name })
			for _, o := range st.Links {
				if o.At.NS == end.At.NS && o.Master == end.At.Name {
					o.Master = ""
				}
			}
		}
	case journal.OpMAC:
		l := st.link(LinkKey{s.NS, s.Name})
		st.Of[i] = l
		if l.Untagged && s.New != "" && s.State != journal.StateIntent {
			l.MAC = s.New // it is known by its MAC: the one it has now
		}
	case journal.OpFDB, journal.OpFDBDel, journal.OpShape:
		l := st.link(LinkKey{s.NS, s.Name})
		st.Of[i] = l
		if s.Op == journal.OpShape {
			l.Shape = s.New
		}
	case journal.OpUp, journal.OpMTU, journal.OpHairpin:
		l := st.link(LinkKey{s.NS, s.Name})
		st.Of[i] = l
		if s.Op == journal.OpUp && s.New == "down" && s.Was != nil && s.State != journal.StateIntent {
			// What the kernel dropped with the link (see journal.OpUp).
			for _, e := range s.Was.Ends {
				for _, r := range e.Routes {
					key := r.Key()
					st.routes[e.NS] = slices.DeleteFunc(st.routes[e.NS], func(r kernel.Route) bool { return r.Key() == key })
				}
				l.Addrs = slices.DeleteFunc(l.Addrs, func(a netip.Prefix) bool { return slices.Contains(e.Addrs, a) })
			}
		}
	case journal.OpRoute, journal.OpRouteDel:
		if s.Route == nil {
			return
		}
		if s.Route.Dev != "" {
			if l, ok := st.at[LinkKey{s.NS, s.Route.Dev}]; ok {
				st.Of[i] = l
			}
		}
		key := s.Route.Key()
		st.routes[s.NS] = slices.DeleteFunc(st.routes[s.NS], func(r kernel.Route) bool {
			return r.Key() == key && (s.Op == journal.OpRouteDel || s.OldRoute != nil)
		})
		if s.Op == journal.OpRoute {
			st.routes[s.NS] = append(st.routes[s.NS], *s.Route)
		}
	}
}

// Stacked returns the links the steps made on the link at k (macvlans,
// vlans) that are there still.
func (st *State) Stacked(k LinkKey) []*Link {
	var out []*Link
	for _, l := range st.Links {
		if l.Removed < 0 && l.ParentNS == k.NS && l.Parent == k.Name {
			out = append(out, l)
		}
	}
	return out
}

// Routes returns the lab's routes in namespace ns, as the steps left them.
func (st *State) Routes(ns string) []kernel.Route { return slices.Clone(st.routes[ns]) }

// Forget takes back what step s made (one undone, or queued and never
// made): a namespace, or a link with its peer.
func (st *State) Forget(s journal.Step) {
	switch s.Op {
	case journal.OpNetns:
		if n, ok := st.netns[s.Name]; ok {
			delete(st.netns, s.Name)
			st.Netns = slices.DeleteFunc(st.Netns, func(m *Netns) bool { return m == n })
		}
	case journal.OpLink:
		// Found where it was made (s says), wherever it went since.
		l, ok := st.born[LinkKey{s.NS, s.Name}]
		if !ok {
			return
		}
		for _, end := range []*Link{l, l.Peer} {
			if end != nil {
				delete(st.born, end.Born)
				if st.at[end.At] == end {
					delete(st.at, end.At)
				}
			}
		}
		st.Links = slices.DeleteFunc(st.Links, func(m *Link) bool { return m == l || (l.Peer != nil && m == l.Peer) })
	}
}

// made records l, just made.
func (st *State) made(l *Link) {
	st.place(l)
	st.born[l.Born] = l
	st.Links = append(st.Links, l)
}

// place puts l where it is now.
func (st *State) place(l *Link) {
	st.at[l.At] = l
	st.order = append(st.order, l.At)
}

// link returns the link at k, one the steps did not make if none they made
// is there (a change to lo, say).
func (st *State) link(k LinkKey) *Link {
	if l, ok := st.at[k]; ok {
		return l
	}
	l := &Link{At: k, Made: -1, Moved: -1, Removed: -1}
	st.at[k] = l
	return l
}

// HasNetns reports whether the steps made namespace ns.
func (st *State) HasNetns(ns string) bool {
	_, ok := st.netns[ns]
	return ok
}

// NetnsNames returns the names of the namespaces made, sorted.
func (st *State) NetnsNames() []string {
	names := make([]string, 0, len(st.Netns))
	for _, n := range st.Netns {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// MadeLink returns the link the steps made that is at ns, name now.
func (st *State) MadeLink(ns, name string) (*Link, bool) {
	l, ok := st.at[LinkKey{ns, name}]
	if !ok || l.Made < 0 {
		return nil, false
	}
	return l, true
}

// InOrder returns the links the steps made as they are now, in the order
// they were made or moved to where they are.
func (st *State) InOrder() []*Link {
	seen := map[LinkKey]bool{}
	var out []*Link
	for _, k := range st.order {
		l, ok := st.at[k]
		if !ok || seen[k] || l.Made < 0 {
			continue
		}
		seen[k] = true
		out = append(out, l)
	}
	return out
}

// Segment returns the links that share a layer-2 segment with the link at
// k (k's own first), as the steps have them now: what a broadcast from k
// may reach, such as a DHCP request. It goes through a veth to its other
// end, through a bridge to its ports, from a macvlan out through its
// parent's wire (its peer, its bridge) and to its siblings when both are in
// bridge mode, and from a wire into the link on its far end and the
// macvlans on it. A vlan's tagged segment, or a vxlan's, is not its parent's. Which way a
// frame flows is not followed (a bridge does not send one back where it
// came from): the segment may hold more than a broadcast reaches.
func (st *State) Segment(k LinkKey) []LinkKey {
	type visit struct {
		k         LinkKey
		fromChild bool // reached from a macvlan on it: only its wire is reached, not it
	}
	seen := map[visit]bool{}
	in := map[LinkKey]bool{}
	out := []LinkKey{k}
	in[k] = true
	queue := []visit{{k, false}}
	add := func(v visit) {
		if !seen[v] {
			queue = append(queue, v)
		}
	}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		if seen[v] {
			continue
		}
		seen[v] = true
		if !v.fromChild && !in[v.k] {
			in[v.k] = true
			out = append(out, v.k)
		}
		l, ok := st.at[v.k]
		if !ok {
			continue
		}
		if l.Peer != nil {
			add(visit{l.Peer.At, false})
		}
		if l.Master != "" {
			add(visit{LinkKey{v.k.NS, l.Master}, false})
		}
		for _, o := range st.Links {
			switch {
			case o.Removed >= 0:
			case l.Kind == "bridge" && o.At.NS == v.k.NS && o.Master == v.k.Name: // its ports
				add(visit{o.At, false})
			case !v.fromChild && o.Kind != "vlan" && o.Kind != "vxlan" && o.ParentNS == v.k.NS && o.Parent == v.k.Name: // the macvlans on it
				add(visit{o.At, false})
			case l.Mode == "bridge" && o.Mode == "bridge" && o.ParentNS == l.ParentNS && o.Parent == l.Parent && o != l: // siblings
				add(visit{o.At, false})
			}
		}
		if l.Parent != "" && l.Kind != "vlan" && l.Kind != "vxlan" {
			parent := LinkKey{l.ParentNS, l.Parent}
			p, ok := st.at[parent]
			add(visit{parent, !ok || p.Kind != "bridge"})
		}
	}
	return out
}

// AddrsOf returns the addresses the steps gave the link at k.
func (st *State) AddrsOf(k LinkKey) []netip.Prefix {
	if l, ok := st.at[k]; ok {
		return slices.Clone(l.Addrs)
	}
	return nil
}
