package kernel

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Observer reads the state of a namespace: what `ip link`, `ip addr`,
// `ip route` and `ip neigh` show. It changes nothing. Every list comes back
// sorted, and carries no ifindex, so that two runs of a recipe compare equal.
type Observer interface {
	LinkLister
	Addrs(ns string) ([]Addr, error)       // by device, family, address
	Routes(ns string) ([]RouteInfo, error) // by family, destination, metric
	Neighbors(ns string) ([]Neighbor, error)
}

// Addr is an address of a link.
type Addr struct {
	Dev    string
	Prefix netip.Prefix // the address with its prefix length: 10.0.0.1/24
	Scope  string       // "global", "link", "host", ...
	// Secondary: an IPv4 address of a subnet the link has another
	// (primary) address in; removing the primary takes it along.
	Secondary bool
	// Tentative: an IPv6 address whose duplicate address detection is
	// not done; it cannot be used yet.
	Tentative bool
}

// RouteInfo is a route as `ip route show table all` shows it (but the
// local table's). A zero Dst is a default route.
type RouteInfo struct {
	Dst    netip.Prefix
	Family int // 4 or 6
	Table  int // 0: main
	Via    netip.Addr
	Dev    string
	Proto  string // "kernel", "static", "boot", "nsrun", ...
	Metric int
	Type   string // "unicast", "unreachable", "blackhole", "prohibit", ...
	Src    netip.Addr
}

// Neighbor is an entry of the ARP (IPv4) or NDP (IPv6) table.
type Neighbor struct {
	IP    netip.Addr
	MAC   string // "" while unresolved
	Dev   string
	State string // "REACHABLE", "STALE", "DELAY", "PROBE", "INCOMPLETE", "FAILED", "PERMANENT"
}

var (
	_ Observer = (*Netlink)(nil)
	_ Observer = (*Recorder)(nil)
)

// dumpRetries bounds how often a dump the kernel interrupted (the table
// changed while it was read) is started again.
const dumpRetries = 10

// dump runs a netlink dump until the kernel reports it consistent: a partial
// dump would make present objects look absent.
func dump[T any](what, ns string, f func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpRetries {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("listing %s in netns %q: %w", what, NSArg(ns), err)
	}
	return v, nil
}

// names maps the namespace's ifindexes to link names.
func (k *Netlink) names(ns string) (map[int]string, []netlink.Link, error) {
	h, err := k.h(ns)
	if err != nil {
		return nil, nil, err
	}
	links, err := dump("links", ns, h.LinkList)
	if err != nil {
		return nil, nil, err
	}
	m := make(map[int]string, len(links))
	for _, l := range links {
		m[l.Attrs().Index] = l.Attrs().Name
	}
	return m, links, nil
}

// Links lists the namespace's links.
//
// Equivalent to: ip -n $ns link show
func (k *Netlink) Links(ns string) ([]LinkInfo, error) {
	names, links, err := k.names(ns)
	if err != nil {
		return nil, err
	}
	out := make([]LinkInfo, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		kind, mac := l.Type(), a.HardwareAddr.String()
		if a.Flags&net.FlagLoopback != 0 {
			// As ip -d link and Recorder show it; netlink says "device"
			// and drops an all-zero address.
			kind, mac = "loopback", "00:00:00:00:00:00"
		}
		out = append(out, LinkInfo{
			NS: ns, Name: a.Name, Kind: kind, MAC: mac, MTU: a.MTU,
			Up: a.Flags&net.FlagUp != 0, Master: names[a.MasterIndex], Alias: a.Alias, Oper: a.OperState.String(),
			Carrier: a.RawFlags&unix.IFF_LOWER_UP != 0,
		})
	}
	slices.SortFunc(out, func(a, b LinkInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Addrs lists the namespace's addresses, IPv4 and IPv6.
//
// Equivalent to: ip -n $ns addr show
func (k *Netlink) Addrs(ns string) ([]Addr, error) {
	names, _, err := k.names(ns)
	if err != nil {
		return nil, err
	}
	h, _ := k.h(ns)
	addrs, err := dump("addresses", ns, func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	return addrsOf(addrs, func(i int) string { return names[i] }), nil
}

// LinkAddrs lists the addresses of one link of ns: with one request for the
// link and one dump of addresses from a kernel that can (Netlink), not a dump
// of every link of the namespace as Addrs needs for the names of all.
func LinkAddrs(obs Observer, ns, name string) ([]Addr, error) {
	if k, ok := obs.(*Netlink); ok {
		return k.linkAddrs(ns, name)
	}
	all, err := obs.Addrs(ns)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(a Addr) bool { return a.Dev != name }), nil
}

func (k *Netlink) linkAddrs(ns, name string) ([]Addr, error) {
	h, err := k.h(ns)
	if err != nil {
		return nil, err
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %q in netns %q: %w", name, NSArg(ns), err)
	}
	addrs, err := dump("addresses", ns, func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	return addrsOf(addrs, func(int) string { return name }), nil
}

// addrsOf converts the kernel's addresses, naming their links with dev.
func addrsOf(addrs []netlink.Addr, dev func(index int) string) []Addr {
	out := make([]Addr, 0, len(addrs))
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, Addr{Dev: dev(a.LinkIndex), Prefix: netip.PrefixFrom(ip.Unmap(), ones), Scope: scopeName(a.Scope),
			Tentative: a.Flags&unix.IFA_F_TENTATIVE != 0 && a.Flags&unix.IFA_F_DADFAILED == 0,
			Secondary: a.Flags&unix.IFA_F_SECONDARY != 0})
	}
	sortAddrs(out)
	return out
}

func sortAddrs(out []Addr) {
	slices.SortFunc(out, func(a, b Addr) int {
		return cmp.Or(cmp.Compare(a.Dev, b.Dev), cmp.Compare(a.Prefix.Addr().BitLen(), b.Prefix.Addr().BitLen()),
			a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
}

func scopeName(s int) string {
	switch netlink.Scope(s) {
	case netlink.SCOPE_UNIVERSE:
		return "global"
	case netlink.SCOPE_SITE:
		return "site"
	case netlink.SCOPE_LINK:
		return "link"
	case netlink.SCOPE_HOST:
		return "host"
	case netlink.SCOPE_NOWHERE:
		return "nowhere"
	}
	return fmt.Sprint(s)
}

// Routes lists the routes of every table but local (main's first), IPv4
// then IPv6.
//
// Equivalent to: ip -n $ns route show table all; ip -n $ns -6 route show table all
func (k *Netlink) Routes(ns string) ([]RouteInfo, error) {
	names, _, err := k.names(ns)
	if err != nil {
		return nil, err
	}
	h, _ := k.h(ns)
	var out []RouteInfo
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := dump("routes", ns, func() ([]netlink.Route, error) {
			return h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			if r.Table == unix.RT_TABLE_LOCAL {
				continue
			}
			ri := RouteInfo{Family: 4, Table: tableInfo(r.Table), Dev: names[r.LinkIndex], Proto: protoName(r.Protocol), Metric: r.Priority, Type: routeType(r.Type)}
			if r.Src != nil {
				ri.Src, _ = netip.AddrFromSlice(r.Src)
				ri.Src = ri.Src.Unmap()
			}
			if fam == netlink.FAMILY_V6 {
				ri.Family = 6
			}
			if r.Dst != nil {
				if ip, ok := netip.AddrFromSlice(r.Dst.IP); ok {
					ones, _ := r.Dst.Mask.Size()
					if ri.Dst = netip.PrefixFrom(ip.Unmap(), ones); ones == 0 {
						ri.Dst = netip.Prefix{} // 0.0.0.0/0 and ::/0 are the default route
					}
				}
			}
			if ip, ok := netip.AddrFromSlice(r.Gw); ok {
				ri.Via = ip.Unmap()
			}
			if len(r.MultiPath) > 0 && ri.Dev == "" {
				ri.Dev = names[r.MultiPath[0].LinkIndex]
				if ip, ok := netip.AddrFromSlice(r.MultiPath[0].Gw); ok {
					ri.Via = ip.Unmap()
				}
			}
			out = append(out, ri)
		}
	}
	sortRoutes(out)
	return out, nil
}

// tableInfo is a table as RouteInfo has it: main is 0.
func tableInfo(t int) int {
	if t == MainTable {
		return 0
	}
	return t
}

func sortRoutes(out []RouteInfo) {
	slices.SortFunc(out, func(a, b RouteInfo) int {
		return cmp.Or(cmp.Compare(a.Family, b.Family), cmp.Compare(a.Table, b.Table), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()),
			a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Metric, b.Metric), cmp.Compare(a.Dev, b.Dev),
			a.Via.Compare(b.Via))
	})
}

func protoName(p netlink.RouteProtocol) string {
	if p == RouteProtocol {
		return "nsrun"
	}
	return p.String()
}

func routeType(t int) string {
	switch t {
	case unix.RTN_UNICAST, unix.RTN_UNSPEC:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_MULTICAST:
		return "multicast"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_THROW:
		return "throw"
	}
	return fmt.Sprint(t)
}

// Neighbors lists the ARP and NDP entries, leaving out those `ip neigh`
// hides (NOARP: multicast and loopback; NONE).
//
// Equivalent to: ip -n $ns neigh show; ip -n $ns -6 neigh show
func (k *Netlink) Neighbors(ns string) ([]Neighbor, error) {
	names, _, err := k.names(ns)
	if err != nil {
		return nil, err
	}
	h, _ := k.h(ns)
	var out []Neighbor
	// One dump per family: AF_UNSPEC would also return the bridges' FDBs.
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		neighs, err := dump("neighbors", ns, func() ([]netlink.Neigh, error) { return h.NeighList(0, fam) })
		if err != nil {
			return nil, err
		}
		for _, n := range neighs {
			if n.State == netlink.NUD_NONE || n.State&netlink.NUD_NOARP != 0 {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			nb := Neighbor{IP: ip.Unmap(), Dev: names[n.LinkIndex], State: NeighState(n.State)}
			if len(n.HardwareAddr) > 0 {
				nb.MAC = n.HardwareAddr.String()
			}
			out = append(out, nb)
		}
	}
	slices.SortFunc(out, func(a, b Neighbor) int {
		return cmp.Or(cmp.Compare(a.Dev, b.Dev), cmp.Compare(a.IP.BitLen(), b.IP.BitLen()), a.IP.Compare(b.IP))
	})
	return out, nil
}

// NeighState names a NUD state as `ip neigh` does.
func NeighState(s int) string {
	switch s {
	case netlink.NUD_INCOMPLETE:
		return "INCOMPLETE"
	case netlink.NUD_REACHABLE:
		return "REACHABLE"
	case netlink.NUD_STALE:
		return "STALE"
	case netlink.NUD_DELAY:
		return "DELAY"
	case netlink.NUD_PROBE:
		return "PROBE"
	case netlink.NUD_FAILED:
		return "FAILED"
	case netlink.NUD_NOARP:
		return "NOARP"
	case netlink.NUD_PERMANENT:
		return "PERMANENT"
	case netlink.NUD_NONE:
		return "NONE"
	}
	return fmt.Sprintf("0x%x", s)
}

// Links lists the model's links in ns.
func (r *Recorder) Links(ns string) ([]LinkInfo, error) {
	if err := r.hasNS(ns); err != nil {
		return nil, err
	}
	var out []LinkInfo
	for key, l := range r.links {
		if key[0] == ns {
			c := *l
			c.peer, c.addrs = [2]string{}, nil
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b LinkInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Addrs lists the addresses the run added in ns. The model knows no
// scopes: an address is "host" in 127.0.0.0/8 and ::1, "link" in
// fe80::/10, else "global", as the kernel would set them.
func (r *Recorder) Addrs(ns string) ([]Addr, error) {
	if err := r.hasNS(ns); err != nil {
		return nil, err
	}
	var out []Addr
	for key, l := range r.links {
		if key[0] != ns {
			continue
		}
		for i, p := range l.addrs {
			scope := "global"
			switch {
			case p.Addr().IsLoopback():
				scope = "host"
			case p.Addr().IsLinkLocalUnicast():
				scope = "link"
			}
			// As the kernel has it: the first IPv4 address of a subnet
			// is its primary, the later ones secondaries.
			secondary := p.Addr().Is4() && slices.ContainsFunc(l.addrs[:i], func(q netip.Prefix) bool { return q.Addr().Is4() && q.Masked() == p.Masked() })
			out = append(out, Addr{Dev: l.Name, Prefix: p, Scope: scope, Secondary: secondary})
		}
	}
	sortAddrs(out)
	return out, nil
}

// Routes returns the model's routes of a namespace: those the plan added
// and the kernel's for its addresses' subnets (not the local table's); for
// the host, the real kernel's too if the recorder may read it (see Real).
func (r *Recorder) Routes(ns string) ([]RouteInfo, error) {
	if err := r.hasNS(ns); err != nil {
		return nil, err
	}
	var out []RouteInfo
	if o, ok := r.Real.(Observer); ok && ns == Host {
		real, err := o.Routes(ns)
		if err != nil {
			return nil, err
		}
		out = append(out, real...)
	}
	for _, rt := range r.routes[ns] {
		out = append(out, RouteInfo{Family: rt.Family, Table: tableInfo(rt.Table), Dst: rt.Dst, Via: rt.via, Dev: rt.dev, Proto: rt.proto, Metric: rt.Metric, Type: rt.typ, Src: rt.src})
	}
	sortRoutes(out)
	return out, nil
}

// Neighbors returns nothing: nothing is ever resolved in a plan.
func (r *Recorder) Neighbors(ns string) ([]Neighbor, error) { return nil, r.hasNS(ns) }
