package builtins

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
	"github.com/nsrun/nsrun/runtime/proc"
)

// link.delete() removes a link the lab made (a veth: both ends) and
// returns None. The rollback makes it again as it was: the same name, MACs,
// MTU, addresses, master and state, a bridge's ports back in it, the lab's
// routes through it back. Its names are free again. A link something of the
// lab's is stacked on (a macvlan) is refused: delete that first.
//
// Equivalent to: ip -n $ns link del $link
func linkDelete(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	if err := deleteLink(thread, b, rt, l); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// notTaken is the work of a removal an apply takes as the lab's (see
// engine.Runtime.WouldAdopt): never done.
func notTaken(kernel.Kernel, *journal.Step) error {
	return errors.New("internal error: the lab's removal was not taken as made")
}

// deleteLink removes link l, as link.delete() does.
func deleteLink(thread *starlark.Thread, b *starlark.Builtin, rt *engine.Runtime, l *Link) error {
	ns, name, where := l.ns(), l.state.name, l.state.ns.Name()
	if !rt.MadeLink(ns, name) {
		return fmt.Errorf("%s: link %q in netns %q was not created by this lab; nsrun deletes only the links a lab made", b.Name(), name, where)
	}
	ends := []*Link{l}
	if l.state.peer != nil {
		ends = append(ends, l.state.peer)
	}
	for _, e := range ends { // the kernel would delete them with it
		if on := rt.Stacked(e.ns(), e.state.name); len(on) > 0 {
			return fmt.Errorf("%s: %s %q in netns %q is stacked on %q: delete it first", b.Name(), on[0].Kind, on[0].At.Name, kernel.NSArg(on[0].At.NS), e.state.name)
		}
	}
	w := says("%s: removing %q in netns %q", b.Name(), name, where)
	if probe := (journal.Step{Op: journal.OpLinkDel, NS: ns, Name: name, Kind: l.state.kind}); rt.WouldAdopt(probe) {
		return now(thread, rt, probe, w, notTaken) // an apply's: the lab removed it already
	}
	k, err := rt.Kernel()
	if err != nil {
		return err
	}
	was, err := linkWas(rt, k, l)
	if err != nil {
		return fmt.Errorf("%s: %q in netns %q: %w", b.Name(), name, where, err)
	}
	step := journal.Step{Op: journal.OpLinkDel, NS: ns, Name: name, Kind: l.state.kind, Alias: was.Spec.Alias, MAC: l.state.mac, Was: was}
	fp := kernel.Fingerprint{Alias: was.Spec.Alias}
	if l.state.untagged {
		fp = kernel.Fingerprint{MAC: l.state.mac}
	}
	if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.LinkDel(ns, name, fp) }); err != nil {
		return err
	}
	return nil
}

// linkWas reads what link l is now, as the kernel has it, for its removal's
// undo to make it again.
func linkWas(rt *engine.Runtime, k kernel.Kernel, l *Link) (*journal.LinkWas, error) {
	order := []*Link{l}
	if p := l.state.peer; p != nil {
		order = append(order, p)
		if l.state.untagged { // made again as it was made: the untagged end as the peer
			order = []*Link{p, l}
		}
	}
	w := &journal.LinkWas{}
	obs, _ := kernel.As[kernel.Observer](k)
	for _, e := range order {
		info, err := k.LinkGet(e.ns(), e.state.name)
		if err != nil {
			return nil, err
		}
		end := journal.EndWas{NS: e.ns(), Name: e.state.name, MTU: info.MTU, Up: info.Up, Master: info.Master, Hairpin: e.state.hairpin}
		end.Shape = shapeOf(rt, e.ns(), e.state.name)
		end.FDB = fdbEntries(rt, e.ns(), e.state.name)
		for _, st := range rt.Steps() { // the lab's last setting of each of its keys
			if st.Op == journal.OpSysctl && st.NS == e.ns() && kernel.SysctlDevice(st.Name) == e.state.name {
				if end.Sysctls == nil {
					end.Sysctls = map[string]string{}
				}
				end.Sysctls[st.Name] = st.New
			}
		}
		if obs != nil {
			addrs, err := kernel.LinkAddrs(obs, e.ns(), e.state.name)
			if err != nil {
				return nil, err
			}
			for _, a := range addrs {
				if !(a.Prefix.Addr().Is6() && a.Prefix.Addr().IsLinkLocalUnicast()) {
					end.Addrs = append(end.Addrs, a.Prefix)
				}
			}
		}
		if end.Routes, err = labRoutesThrough(rt, k, e.ns(), e.state.name); err != nil {
			return nil, err
		}
		w.Ends = append(w.Ends, end)
		if e == order[0] {
			w.Spec = kernel.LinkSpec{NS: e.ns(), Name: e.state.name, Kind: l.state.kind, MAC: hwOf(info.MAC), MTU: info.MTU, Alias: rt.Tag()}
			if info.Kind == "bridge" {
				lister, ok := kernel.As[kernel.LinkLister](k)
				if ok {
					links, err := lister.Links(e.ns())
					if err != nil {
						return nil, err
					}
					for _, p := range links {
						if p.Master != e.state.name {
							continue
						}
						if !rt.OwnsLink(e.ns(), p.Name) {
							// Deleting the bridge would release it, and
							// the undo take it again: not the lab's to touch.
							return nil, fmt.Errorf("bridge %q has a port that is not the lab's, %q", e.state.name, p.Name)
						}
						w.Ports = append(w.Ports, p.Name)
					}
				}
			}
		} else {
			w.Spec.PeerNS, w.Spec.PeerName, w.Spec.PeerMAC, w.Spec.PeerUntagged = e.ns(), e.state.name, hwOf(info.MAC), e.state.untagged
		}
	}
	if ml, ok := rt.Link(l.ns(), l.state.name); ok && l.state.kind == "bridge" {
		if err := kernel.ParseBridgeArgs(ml.Mode, &w.Spec); err != nil {
			return nil, err
		}
	} else if ok && l.state.kind == "vxlan" {
		w.Spec.Parent, w.Spec.ParentNS = ml.Parent, ml.ParentNS
		if err := kernel.ParseVxlanArgs(ml.Mode, &w.Spec); err != nil {
			return nil, err
		}
	} else if ok && ml.Parent != "" {
		w.Spec.ParentNS, w.Spec.Parent, w.Spec.Mode = ml.ParentNS, ml.Parent, ml.Mode
		if l.state.kind == "vlan" {
			w.Spec.VlanID, _ = strconv.Atoi(ml.Mode)
			w.Spec.Mode = ""
		}
		if l.state.kind == "vlan" || ml.Mode == "passthru" {
			w.Spec.MAC = nil // the parent's, as when it was made
		}
	}
	if w.Spec.NS == kernel.Host {
		w.Spec.Group = kernel.GroupOf(w.Spec.Alias)
	}
	slices.Sort(w.Ports)
	return w, nil
}

// droppedByDown reads what the kernel drops when it takes link l down: its
// IPv6 addresses (but the link-local ones, which come back by themselves)
// and the lab's routes through it. Nil if nothing.
func droppedByDown(rt *engine.Runtime, l *Link) (*journal.LinkWas, error) {
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	obs, ok := kernel.As[kernel.Observer](k)
	if !ok {
		return nil, nil
	}
	ns, name := l.ns(), l.state.name
	end := journal.EndWas{NS: ns, Name: name}
	addrs, err := obs.Addrs(ns)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if a.Dev == name && a.Prefix.Addr().Is6() && !a.Prefix.Addr().IsLinkLocalUnicast() {
			end.Addrs = append(end.Addrs, a.Prefix)
		}
	}
	if end.Routes, err = labRoutesThrough(rt, k, ns, name); err != nil {
		return nil, err
	}
	if len(end.Addrs) == 0 && len(end.Routes) == 0 {
		return nil, nil
	}
	return &journal.LinkWas{Ends: []journal.EndWas{end}}, nil
}

// droppedByAddrDel is what the kernel drops with IPv4 address p of link l
// (have: the namespace's addresses; removed: those this removal takes, p
// the last of them): the lab's routes whose preferred source p is, and, if
// the link is left with no IPv4 address, every IPv4 route of the lab's
// through it. The undo puts them back after the address.
func droppedByAddrDel(rt *engine.Runtime, k kernel.Kernel, l *Link, have []kernel.Addr, removed map[netip.Prefix]bool, p netip.Prefix) (*journal.LinkWas, error) {
	if !p.Addr().Is4() {
		return nil, nil
	}
	ns, name := l.ns(), l.state.name
	last := !slices.ContainsFunc(have, func(a kernel.Addr) bool {
		return a.Dev == name && a.Prefix.Addr().Is4() && !removed[a.Prefix]
	})
	end := journal.EndWas{NS: ns, Name: name}
	var through []kernel.Route
	if last {
		var err error
		if through, err = labRoutesThrough(rt, k, ns, name); err != nil {
			return nil, err
		}
	}
	for _, r := range rt.Routes(ns) {
		if r.Family == 6 || r.Via.Is6() || r.Dst.IsValid() && r.Dst.Addr().Is6() {
			continue
		}
		if r.Src == p.Addr() || slices.ContainsFunc(through, func(t kernel.Route) bool { return t.Key() == r.Key() }) {
			end.Routes = append(end.Routes, r)
		}
	}
	if len(end.Routes) == 0 {
		return nil, nil
	}
	return &journal.LinkWas{Ends: []journal.EndWas{end}}, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// notPrimary refuses the removal of an IPv4 address whose subnet has
// other addresses on the link (in addrs, the kernel's) that this removal
// does not take too: the kernel removes those with their primary (unless
// promote_secondaries is set).
func notPrimary(addrs []kernel.Addr, dev string, p netip.Prefix, removing []netip.Prefix) error {
	if !p.Addr().Is4() {
		return nil
	}
	primary := false
	var others []string
	for _, a := range addrs {
		switch {
		case a.Dev != dev || !a.Prefix.Addr().Is4() || a.Prefix.Masked() != p.Masked():
		case a.Prefix == p:
			primary = !a.Secondary
		case !slices.Contains(removing, a.Prefix):
			others = append(others, a.Prefix.String())
		}
	}
	if primary && len(others) > 0 {
		return fmt.Errorf("it is the first address of its subnet there, and the kernel would remove %s with it: remove those first", strings.Join(others, ", "))
	}
	return nil
}

// labRoutesThrough returns the lab's routes in ns that the kernel has
// through link name: it drops a link's routes when the link goes down, and
// one added with a gateway only goes through the link it chose.
func labRoutesThrough(rt *engine.Runtime, k kernel.Kernel, ns, name string) ([]kernel.Route, error) {
	routes := rt.Routes(ns)
	if len(routes) == 0 { // none to look for: no read of the kernel's table
		return nil, nil
	}
	devs, err := labRoutesInKernel(k, ns)
	if err != nil {
		return nil, err
	}
	var out []kernel.Route
	for _, r := range routes {
		if dev, ok := devs[r.Key()]; ok && dev == name {
			out = append(out, r)
		}
	}
	return out, nil
}

// labRoutesInKernel returns, by key, the device of each route of the lab's
// (nsrun's protocol, or a lease's) that the kernel has in ns; nil from a
// kernel that cannot list them.
func labRoutesInKernel(k kernel.Kernel, ns string) (map[kernel.RouteKey]string, error) {
	obs, ok := kernel.As[kernel.Observer](k)
	if !ok {
		return nil, nil
	}
	rs, err := obs.Routes(ns)
	if err != nil {
		return nil, err
	}
	m := map[kernel.RouteKey]string{}
	for _, r := range rs {
		if r.Proto == "nsrun" || r.Proto == "dhcp" {
			m[kernel.Route{Dst: r.Dst, Family: r.Family, Metric: r.Metric, Table: r.Table}.Key()] = r.Dev
		}
	}
	return m, nil
}

// hwOf parses a MAC the kernel reported.
func hwOf(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		return nil
	}
	return m
}

// link.addr_del(cidr, ...) removes addresses the lab gave the link (with
// .addr() or dhcp_client); the rollback puts them back. An address the lab
// did not add (the kernel's link-local one, one added by hand) is refused:
// nsrun removes only what it made.
//
// Equivalent to: ip addr del $cidr dev $link
func linkAddrDel(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	addrs, err := cidrArgs(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	fn, ns, name, where := b.Name(), l.ns(), l.state.name, l.state.ns.Name()
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	var have []kernel.Addr // as the kernel has them, read once
	if obs, ok := kernel.As[kernel.Observer](k); ok {
		if have, err = obs.Addrs(ns); err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
	}
	// A subnet's secondaries go before its primary, so that the undo, newest
	// first, adds the primary first, as it was.
	secondary := func(p netip.Prefix) bool {
		return slices.ContainsFunc(have, func(a kernel.Addr) bool { return a.Dev == name && a.Prefix == p && a.Secondary })
	}
	slices.SortStableFunc(addrs, func(a, b netip.Prefix) int {
		return cmp.Compare(b2i(!secondary(a)), b2i(!secondary(b)))
	})
	removed := map[netip.Prefix]bool{}
	for _, p := range addrs {
		if !slices.Contains(rt.Addrs(ns, name), p) {
			return nil, fmt.Errorf("%s: %s on %q in netns %q is not an address this lab added: nsrun removes only what a lab made", fn, p, name, where)
		}
		if err := notPrimary(have, name, p, addrs); err != nil {
			return nil, fmt.Errorf("%s: %s on %q in netns %q: %w", fn, p, name, where, err)
		}
		removed[p] = true
		was, err := droppedByAddrDel(rt, k, l, have, removed, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
		step := journal.Step{Op: journal.OpAddrDel, NS: ns, Name: name, Addr: p, Was: was}
		w := says("%s: removing %s from %q in netns %q", fn, p, name, where)
		if err := later(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.AddrDel(ns, name, p) }); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// ns.route_del(dst, metric=None, table=None) removes the lab's route to
// dst ("default" for IPv4's default route, "::/0" for IPv6's) in table
// (main by default): the one with that metric, or, without one, the only
// route of the lab's to dst there. The rollback puts it
// back. A route the lab did not add (the kernel's for an address's subnet,
// a daemon's) is refused.
//
// Equivalent to: ip -n $ns route del $dst [metric $metric] [table $table]
func netnsRouteDel(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := b.Receiver().(*Netns)
	var dst string
	var metricV starlark.Value = starlark.None
	var table routeTable
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "dst", &dst, "metric?", &metricV, "table?", &table); err != nil {
		return nil, err
	}
	p, family, err := routeDst(b, dst, 4)
	if err != nil {
		return nil, err
	}
	metric := -1
	if metricV != starlark.None {
		m, err := starlark.AsInt32(metricV)
		if err != nil {
			return nil, fmt.Errorf("%s: for parameter metric: got %s, want int", b.Name(), metricV.Type())
		}
		if m < 0 {
			return nil, fmt.Errorf("%s: for parameter metric: %d is negative", b.Name(), m)
		}
		metric = m
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if n.name != kernel.Host {
		if err := n.mutable(rt); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	want := kernel.Route{Dst: p, Family: family, Metric: max(metric, 0), Table: int(table)}.Key()
	var found []kernel.Route
	for _, r := range rt.Routes(n.name) {
		if k := r.Key(); k.Family == want.Family && k.Table == want.Table && k.Dst == want.Dst && (metric < 0 || k.Metric == want.Metric) {
			found = append(found, r)
		}
	}
	switch {
	case len(found) == 0:
		in := ""
		if table != 0 {
			in = fmt.Sprintf(" in table %d", table)
		}
		return nil, fmt.Errorf("%s: netns %q has no route of this lab's to %s%s: nsrun removes only the routes a lab added", b.Name(), n.Name(), dst, in)
	case len(found) > 1:
		var metrics []string
		for _, r := range found {
			metrics = append(metrics, fmt.Sprint(r.Key().Metric))
		}
		return nil, fmt.Errorf("%s: the lab has %d routes to %s in netns %q (metrics %s): pass metric=", b.Name(), len(found), dst, n.Name(), strings.Join(metrics, ", "))
	}
	r := found[0]
	w := says("%s: removing %s in netns %q", b.Name(), r, n.Name())
	if err := now(thread, rt, journal.Step{Op: journal.OpRouteDel, NS: n.name, Route: &r}, w, func(k kernel.Kernel, _ *journal.Step) error { return k.RouteDel(n.name, r) }); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// ns.delete() removes a namespace the lab made and returns None: first its
// links (each as link.delete() removes it, with the veth ends and the links
// stacked on them elsewhere), then the lab's NAT in it, then the namespace.
// The rollback makes it again as it was, under its name and tag: lo, the
// lab's sysctls of it, its links, NAT and routes. Its name is free again.
// A namespace the lab's processes run in is refused: stop them first; so is
// one with links the lab did not make (an exec_in's), which nsrun could not
// put back.
//
// Equivalent to: ip netns del $ns
func netnsDelete(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := b.Receiver().(*Netns)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	fn, ns := b.Name(), n.name
	if ns == kernel.Host {
		return nil, fmt.Errorf("%s: host() is the machine's namespace: nsrun deletes only the namespaces a lab made", fn)
	}
	if !rt.OwnsNetns(ns) {
		return nil, fmt.Errorf("%s: netns %q was not created by this lab; nsrun deletes only the namespaces a lab made", fn, ns)
	}
	steps := rt.Steps()
	var made journal.Step // the step that made it, the latest of its name
	for _, s := range steps {
		if s.Op == journal.OpNetns && s.Name == ns {
			made = s
		}
		if s.Op == journal.OpProc && s.NS == ns && proc.Running(s.Pid, s.Start) {
			return nil, fmt.Errorf("%s: process %d (%s) of the lab runs in netns %q: stop it first", fn, s.Pid, s.Name, ns)
		}
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	// In an apply whose lab removed it already, its removal is taken as
	// made, each part as the lab made it, and the kernel is not asked.
	adopting := rt.WouldAdopt(journal.Step{Op: journal.OpNetnsDel, Name: ns})
	// Its links, and the lab's elsewhere that go with them: stacked ones
	// first (the kernel would take them with their parent), then bridge
	// ports (a bridge's undo takes its ports back), then the rest.
	var doomed []*Link
	byKey := map[model.LinkKey]*Link{}
	linkOf := func(ml model.Link) *Link {
		if l, ok := byKey[ml.At]; ok {
			return l
		}
		l := &Link{state: &linkState{ns: &Netns{name: ml.At.NS}, name: ml.At.Name, kind: ml.Kind, mac: ml.MAC, untagged: ml.Untagged, made: true, master: ml.Master}}
		l.state.hairpin = hairpinOf(steps, ml.At)
		byKey[ml.At] = l
		return l
	}
	links := rt.Links()
	at := map[model.LinkKey]model.Link{}
	for _, ml := range links {
		at[ml.At] = ml
	}
	for _, ml := range links {
		in := ml.At.NS == ns || ml.ParentNS == ns || (ml.Peer != nil && ml.Peer.At.NS == ns)
		if !in {
			continue
		}
		l := linkOf(ml)
		if ml.Peer != nil {
			if p, ok := at[ml.Peer.At]; ok {
				l.state.peer = linkOf(p)
				l.state.peer.state.peer = l
			}
		}
		doomed = append(doomed, l)
	}
	rank := func(l *Link) int {
		ml := at[model.LinkKey{NS: l.ns(), Name: l.state.name}]
		switch {
		case ml.Parent != "":
			return 0
		case ml.Master != "":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(doomed, func(a, b *Link) int { return cmp.Compare(rank(a), rank(b)) })
	if lister, ok := kernel.As[kernel.LinkLister](k); ok && !adopting {
		have, err := lister.Links(ns)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
		for _, info := range have {
			if _, ok := byKey[model.LinkKey{NS: ns, Name: info.Name}]; !ok && info.Name != "lo" {
				return nil, fmt.Errorf("%s: netns %q has link %q, which the lab did not make (an exec_in's?): nsrun could not put it back; delete it first", fn, ns, info.Name)
			}
		}
	}
	for _, l := range doomed {
		if !rt.MadeLink(l.ns(), l.state.name) {
			continue // gone with its peer
		}
		if err := deleteLink(thread, b, rt, l); err != nil {
			return nil, err
		}
	}
	if err := removeNAT(thread, b, rt, ns); err != nil {
		return nil, err
	}
	w := says("%s: removing netns %q", fn, ns)
	if adopting {
		return starlark.None, now(thread, rt, journal.Step{Op: journal.OpNetnsDel, Name: ns}, w, notTaken)
	}
	lo, err := k.LinkGet(ns, "lo")
	if err != nil {
		return nil, fmt.Errorf("%s: netns %q: %w", fn, ns, err)
	}
	end := journal.EndWas{NS: ns, Name: "lo", Up: lo.Up, Routes: rt.Routes(ns)}
	for _, s := range rt.Steps() { // the lab's last setting of each of its keys
		if dev := kernel.SysctlDevice(s.Name); s.Op == journal.OpSysctl && s.NS == ns && (dev == "" || dev == "lo") { // a link's own came back with it
			if end.Sysctls == nil {
				end.Sysctls = map[string]string{}
			}
			end.Sysctls[s.Name] = s.New
		}
	}
	mode := ""
	if v, err := k.SysctlGet(ns, "net.ipv6.conf.all.disable_ipv6"); err == nil && v == "1" {
		mode = "noipv6"
	}
	id := kernel.NetnsID{Ino: made.Ino, Mnt: made.Mnt, Pin: made.Pin}
	step := journal.Step{Op: journal.OpNetnsDel, Name: ns, Alias: rt.Tag(), Mode: mode, Was: &journal.LinkWas{Ends: []journal.EndWas{end}}}
	if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.NetnsDel(ns, rt.Tag(), id) }); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// hairpinOf reports whether the lab's last hairpin setting of the link at
// k turned it on.
func hairpinOf(steps []journal.Step, k model.LinkKey) bool {
	on := false
	for _, s := range steps {
		if s.Op == journal.OpHairpin && s.NS == k.NS && s.Name == k.Name {
			on = s.New == "on"
		}
	}
	return on
}
