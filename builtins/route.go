package builtins

import (
	"fmt"
	"net/netip"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// ns.route(dst, via=, dev=, metric=, table=, type="unicast", src=,
// replace=False) adds a route to the namespace's main table, or to table
// (a number, 1 to 4294967295 but the local table's 255): dst is a CIDR or
// "default". A unicast route goes via= a gateway or out of dev=; a
// blackhole route drops what it takes, an unreachable or prohibit one
// drops it with an ICMP error (host unreachable, administratively
// prohibited), and takes neither. src= is the source address the
// namespace prefers for what the route sends. With replace=True, it
// takes the place of the lab's route to dst with that metric, in one change
// (ip route replace), and the rollback puts the old one back; a route to dst
// that is not the lab's is never replaced. In host(), the route must go
// through a link of the lab's own (dev=), so that the machine's routing is
// never changed for traffic that is not the lab's.
//
// Equivalent to: ip -n $ns route add|replace [$type] $dst via $via dev $dev metric $metric table $table src $src
func netnsRoute(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := b.Receiver().(*Netns)
	var dst string
	var via, src ipAddr
	var devV starlark.Value = starlark.None
	var metric int
	var table routeTable
	typ := "unicast"
	var replace bool
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "dst", &dst, "via?", &via, "dev?", &devV, "metric?", &metric,
		"table?", &table, "type?", &typ, "src?", &src, "replace?", &replace); err != nil {
		return nil, err
	}
	r := kernel.Route{Via: netip.Addr(via), Metric: metric, Table: int(table), Src: netip.Addr(src)}
	if metric < 0 {
		return nil, fmt.Errorf("%s: for parameter metric: %d is negative", b.Name(), metric)
	}
	if _, ok := kernel.RouteTypes[typ]; !ok {
		return nil, fmt.Errorf("%s: for parameter type: %q is not a route type (unicast, blackhole, unreachable, prohibit)", b.Name(), typ)
	}
	if typ != "unicast" {
		r.Type = typ
		if r.Via.IsValid() || devV != starlark.None {
			return nil, fmt.Errorf("%s: a %s route takes neither via= nor dev=: it sends nothing on", b.Name(), typ)
		}
	}
	family := 4
	if r.Via.Is6() || r.Src.Is6() {
		family = 6
	}
	var err error
	if r.Dst, r.Family, err = routeDst(b, dst, family); err != nil {
		return nil, err
	}
	if r.Via.IsValid() && (r.Via.Is6() != (r.Family == 6)) {
		return nil, fmt.Errorf("%s: via %s and dst %s are of different address families", b.Name(), r.Via, dst)
	}
	if r.Src.IsValid() && (r.Src.Is6() != (r.Family == 6)) {
		return nil, fmt.Errorf("%s: src %s and dst %s are of different address families", b.Name(), r.Src, dst)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	switch d := devV.(type) {
	case starlark.NoneType:
	case *Link:
		if d.ns() != n.name {
			return nil, fmt.Errorf("%s: dev %q is in netns %q, not %q", b.Name(), d.state.name, d.state.ns.Name(), n.Name())
		}
		r.Dev = d.state.name
	case starlark.String:
		var name ifName
		if err := name.Unpack(d); err != nil {
			return nil, fmt.Errorf("%s: for parameter dev: %v", b.Name(), err)
		}
		r.Dev = string(name)
	default:
		return nil, fmt.Errorf("%s: for parameter dev: got %s, want link or string", b.Name(), devV.Type())
	}
	if !r.Via.IsValid() && r.Dev == "" && r.Type == "" {
		return nil, fmt.Errorf("%s: a route needs via= or dev= (or a type= that sends nothing on: blackhole, unreachable, prohibit)", b.Name())
	}
	if n.name == kernel.Host {
		if err := hostRouteAllowed(rt, r); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	if err := n.mutable(rt); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	step := journal.Step{Op: journal.OpRoute, NS: n.name, Route: &r}
	work := func(k kernel.Kernel, _ *journal.Step) error { return k.RouteAdd(n.name, r) }
	exists := "a route to that destination exists"
	if replace {
		exists += ", not the lab's (replace=True replaces only the lab's own)"
		if old, ok := labRoute(rt, n.name, r.Key()); ok {
			k, err := rt.Kernel()
			if err != nil {
				return nil, err
			}
			// Replaced only if the kernel has it still: it drops a link's
			// IPv4 routes when the link goes down, and the route is then
			// an addition (whose undo puts nothing back).
			inKernel, err := labRoutesInKernel(k, n.name)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			if _, there := inKernel[r.Key()]; there || inKernel == nil {
				step.OldRoute = &old
				work = func(k kernel.Kernel, _ *journal.Step) error { return k.RouteReplace(n.name, r) }
			}
		}
	} else if _, ok := labRoute(rt, n.name, r.Key()); ok {
		exists += " (the lab's: pass replace=True to replace it)"
	}
	w := says("%s: adding %s in netns %q", b.Name(), r, n.Name()).orExists(exists)
	if step.OldRoute != nil {
		w = says("%s: replacing %s by %s in netns %q", b.Name(), step.OldRoute, r, n.Name())
	}
	if err := now(thread, rt, step, w, work); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// A routeTable is a routing table's number, as a parameter: 0 (None) or
// 254 is main; local's (255) is the kernel's own.
type routeTable uint32

func (t *routeTable) Unpack(v starlark.Value) error {
	if v == starlark.None {
		*t = 0
		return nil
	}
	i, ok := v.(starlark.Int)
	if !ok {
		return fmt.Errorf("got %s, want int (a routing table's number)", v.Type())
	}
	n, ok := i.Int64()
	switch {
	case !ok || n < 1 || n > 1<<32-1:
		return fmt.Errorf("%s is not a routing table (1 to 4294967295)", i)
	case n == 255:
		return fmt.Errorf("255 is the kernel's local table: a recipe's routes go in another")
	case n == kernel.MainTable:
		n = 0
	}
	*t = routeTable(n)
	return nil
}

// routeDst parses a route's destination: a CIDR, or "default" (of family).
func routeDst(b *starlark.Builtin, dst string, family int) (netip.Prefix, int, error) {
	if dst == "default" {
		return netip.Prefix{}, family, nil
	}
	p, err := parsePrefix(dst)
	if err != nil {
		return netip.Prefix{}, 0, fmt.Errorf("%s: for parameter dst: %v (or \"default\")", b.Name(), err)
	}
	if p != p.Masked() {
		return netip.Prefix{}, 0, fmt.Errorf("%s: for parameter dst: %q has host bits set (did you mean %s?)", b.Name(), dst, p.Masked())
	}
	if p.Addr().Is6() {
		return p, 6, nil
	}
	return p, 4, nil
}

// labRoute returns the lab's route in ns with that key.
func labRoute(rt *engine.Runtime, ns string, key kernel.RouteKey) (kernel.Route, bool) {
	for _, r := range rt.Routes(ns) {
		if r.Key() == key {
			return r, true
		}
	}
	return kernel.Route{}, false
}

// hostRouteAllowed checks a route for the host namespace: it must go
// through a link of the lab's, and must not overlap a route of the
// machine's (one through a link the lab did not create), so that it never
// takes traffic that is not the lab's. A default route never qualifies.
func hostRouteAllowed(rt *engine.Runtime, r kernel.Route) error {
	const never = "nsrun never changes the machine's own routing"
	if r.Type != "" {
		return fmt.Errorf("a %s route in the host namespace would take the machine's traffic; %s", r.Type, never)
	}
	if r.Dev == "" || !rt.OwnsLink(kernel.Host, r.Dev) {
		return fmt.Errorf("a route in the host namespace must use dev= a link this lab created; %s", never)
	}
	if !r.Dst.IsValid() || r.Dst.Bits() == 0 {
		return fmt.Errorf("a default route in the host namespace would take the machine's traffic; %s", never)
	}
	// Every route in the host takes its prefix from the machine's default
	// route; a very short one (0.0.0.0/1) would take most of it.
	if min := map[int]int{4: 8, 6: 16}[r.Family]; r.Dst.Bits() < min {
		return fmt.Errorf("%s is too wide for the host namespace (at least /%d): it would take the machine's traffic; %s", r.Dst, min, never)
	}
	routes, err := hostRoutes(rt)
	if err != nil {
		return err
	}
	for _, m := range routes {
		if m.Family != r.Family || rt.OwnsLink(kernel.Host, m.Dev) {
			continue
		}
		dst := m.Dst
		if !dst.IsValid() { // the machine's default route: everything
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			if m.Family == 4 {
				dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			}
		}
		if dst.Bits() > 0 && dst.Overlaps(r.Dst) {
			return fmt.Errorf("%s overlaps the machine's route to %s (dev %s); %s", r.Dst, m.Dst, m.Dev, never)
		}
	}
	return nil
}

// hostRoutes are the host namespace's routes, the machine's among them, as
// the kernel has them (a plan's recording kernel reads them from the real
// one, if it may): reading them is not the recipe observing the network.
// None from a kernel that cannot tell.
func hostRoutes(rt *engine.Runtime) ([]kernel.RouteInfo, error) {
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	o, ok := kernel.As[kernel.Observer](k)
	if !ok {
		return nil, nil
	}
	return o.Routes(kernel.Host)
}
