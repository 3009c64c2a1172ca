package builtins

import (
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// The namespace observation methods (links, addrs, routes, neighbors, in
// netnsMethods) read what the kernel has, as iproute2 shows it, and change
// nothing. Lists are sorted and carry no ifindex, so that they compare equal
// from one run to the next. An absent value (no master, no gateway, an
// unresolved MAC) is None.

// observer returns the run's kernel as an Observer.
func observer(k kernel.Kernel) (kernel.Observer, bool) {
	noteMadeUp(k)
	return kernel.As[kernel.Observer](k)
}

// observe unpacks a method without arguments and returns its namespace and
// the run's observer.
func observe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, pairs ...any) (*Netns, kernel.Observer, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, pairs...); err != nil {
		return nil, nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, nil, err
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, nil, err
	}
	o, ok := observer(k)
	if !ok {
		return nil, nil, fmt.Errorf("%s: internal error: the run's kernel cannot be observed", b.Name())
	}
	return b.Receiver().(*Netns), o, nil
}

func str(s string) starlark.Value {
	if s == "" {
		return starlark.None
	}
	return starlark.String(s)
}

func strList(ss []string) *starlark.List {
	vs := make([]starlark.Value, len(ss))
	for i, s := range ss {
		vs[i] = starlark.String(s)
	}
	return starlark.NewList(vs)
}

// ns.links() lists the namespace's links, by name:
//
//	[struct(name, kind, mac, mtu, up, master, addrs)]
//
// with master a link name or None and addrs the link's addresses as CIDR
// strings, sorted as ns.addrs() sorts them.
//
// Equivalent to: ip -n $ns addr show
func netnsLinks(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	ns, o, err := observe(thread, b, args, kwargs)
	if err != nil {
		return nil, err
	}
	links, err := o.Links(ns.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	addrs, err := o.Addrs(ns.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	byDev := map[string][]string{}
	for _, a := range addrs {
		byDev[a.Dev] = append(byDev[a.Dev], a.Prefix.String())
	}
	out := make([]starlark.Value, len(links))
	for i, l := range links {
		out[i] = starlarkstruct.FromStringDict(starlark.String("link_info"), starlark.StringDict{
			"name":   starlark.String(l.Name),
			"kind":   starlark.String(l.Kind),
			"mac":    str(l.MAC),
			"mtu":    starlark.MakeInt(l.MTU),
			"up":     starlark.Bool(l.Up),
			"master": str(l.Master),
			"addrs":  strList(byDev[l.Name]),
		})
	}
	return starlark.NewList(out), nil
}

// ns.addrs(scope=None, dev=None, full=False) lists the namespace's
// addresses as CIDR strings ("10.0.0.1/24", "fd00::1/64"), by link name,
// then IPv4 before IPv6, then address. scope keeps only "global", "link"
// (fe80::/10) or "host" (lo) addresses, dev those of one link; with full,
// each is struct(cidr, dev, scope, family).
//
// Equivalent to: ip -n $ns addr show [dev $dev] [scope $scope]
func netnsAddrs(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var scope, dev string
	var full bool
	ns, o, err := observe(thread, b, args, kwargs, "scope?", &scope, "dev?", &dev, "full?", &full)
	if err != nil {
		return nil, err
	}
	switch scope {
	case "", "global", "link", "host":
	default:
		return nil, fmt.Errorf("%s: for parameter scope: %q is not a scope (global, link, host)", b.Name(), scope)
	}
	addrs, err := o.Addrs(ns.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	var out []starlark.Value
	for _, a := range addrs {
		if scope != "" && a.Scope != scope || dev != "" && a.Dev != dev {
			continue
		}
		if !full {
			out = append(out, starlark.String(a.Prefix.String()))
			continue
		}
		family := 4
		if a.Prefix.Addr().Is6() {
			family = 6
		}
		out = append(out, starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
			"cidr":   starlark.String(a.Prefix.String()),
			"dev":    starlark.String(a.Dev),
			"scope":  starlark.String(a.Scope),
			"family": starlark.MakeInt(family),
		}))
	}
	return starlark.NewList(out), nil
}

// ns.routes() lists the routes of the main table, IPv4 then IPv6, by
// destination, then metric:
//
//	[struct(dst, via, dev, proto, metric, family, type)]
//
// dst is a CIDR or "default"; via an address or None; dev a link name or
// None; proto "kernel", "static", "boot", "nsrun" (routes nsrun added), ...;
// family 4 or 6; type "unicast", "unreachable", "blackhole", "prohibit", ...
// On a kernel that only plans the list is empty.
//
// Equivalent to: ip -n $ns route show; ip -n $ns -6 route show
func netnsRoutes(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	ns, o, err := observe(thread, b, args, kwargs)
	if err != nil {
		return nil, err
	}
	routes, err := o.Routes(ns.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	out := make([]starlark.Value, len(routes))
	for i, r := range routes {
		dst, via := "default", ""
		if r.Dst.IsValid() {
			dst = r.Dst.String()
		}
		if r.Via.IsValid() {
			via = r.Via.String()
		}
		out[i] = starlarkstruct.FromStringDict(starlark.String("route_info"), starlark.StringDict{
			"dst":    starlark.String(dst),
			"via":    str(via),
			"dev":    str(r.Dev),
			"proto":  starlark.String(r.Proto),
			"metric": starlark.MakeInt(r.Metric),
			"family": starlark.MakeInt(r.Family),
			"type":   starlark.String(r.Type),
			"table":  starlark.MakeInt(int(kernel.Route{Table: r.Table}.TableOf())),
			"src":    str(srcOf(r)),
		})
	}
	return starlark.NewList(out), nil
}

// ns.neighbors() lists the ARP and NDP tables, by link name, then IPv4
// before IPv6, then address:
//
//	[struct(ip, mac, dev, state)]
//
// mac is None while unresolved; state is "REACHABLE", "STALE", "DELAY",
// "PROBE", "INCOMPLETE", "FAILED" or "PERMANENT". Entries `ip neigh` hides
// (NOARP: multicast, loopback) are left out. On a kernel that only plans
// the list is empty.
//
// Equivalent to: ip -n $ns neigh show; ip -n $ns -6 neigh show
func netnsNeighbors(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	ns, o, err := observe(thread, b, args, kwargs)
	if err != nil {
		return nil, err
	}
	neighs, err := o.Neighbors(ns.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	out := make([]starlark.Value, len(neighs))
	for i, n := range neighs {
		out[i] = starlarkstruct.FromStringDict(starlark.String("neighbor"), starlark.StringDict{
			"ip":    starlark.String(n.IP.String()),
			"mac":   str(n.MAC),
			"dev":   starlark.String(n.Dev),
			"state": starlark.String(n.State),
		})
	}
	return starlark.NewList(out), nil
}

func srcOf(r kernel.RouteInfo) string {
	if r.Src.IsValid() {
		return r.Src.String()
	}
	return ""
}
