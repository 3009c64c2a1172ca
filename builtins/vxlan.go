package builtins

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/undo"
)

// vxlan(name, vni, netns=host(), parent=None, local=None, remote=None,
// group=None, port=4789, learning=True, mac=None, mtu=None) creates a VXLAN
// link in netns: Ethernet frames sent on it go out in UDP (to port) to
// remote, a VTEP, or to group, a multicast group joined on parent, or to
// the VTEPs of the entries link.fdb() adds; local is the address it sends
// from, parent the link it sends by. With learning=False it learns nothing
// from what it receives: only static entries say where a MAC is. A vxlan
// takes VXLAN traffic from every link of its namespace, so one in host()
// is refused unless every link there is the lab's (a sandbox's); nor may
// it send to an address the machine's links reach.
//
// Equivalent to: ip -n $netns link add $name type vxlan id $vni [remote $remote | group $group]
// [local $local] dstport $port [nolearning] [dev $parent]
func vxlan(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name ifName
	var vni int
	var nsA nsArg
	var parent *Link
	var local, remote, group ipAddr
	port, learning := kernel.VxlanPort, true
	var mac macAddr
	var m mtu
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "vni", &vni, "netns?", &nsA, "parent?", &parent,
		"local?", &local, "remote?", &remote, "group?", &group, "port?", &port, "learning?", &learning, "mac?", &mac, "mtu?", &m); err != nil {
		return nil, err
	}
	ns := nsOr(nsA.ns)
	s := kernel.LinkSpec{Kind: "vxlan", NS: ns.name, Name: string(name), MAC: hw(mac), MTU: int(m), VNI: vni,
		Local: netip.Addr(local), Port: port, NoLearning: !learning}
	if vni < 0 || vni > 1<<24-1 {
		return nil, fmt.Errorf("%s: for parameter vni: %d is not a VXLAN network identifier (0 to 16777215)", b.Name(), vni)
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("%s: for parameter port: %d is not a UDP port", b.Name(), port)
	}
	switch r, g := netip.Addr(remote), netip.Addr(group); {
	case r.IsValid() && g.IsValid():
		return nil, fmt.Errorf("%s: remote= and group= are exclusive: a vxlan sends to one VTEP or to one multicast group", b.Name())
	case r.IsValid() && (r.IsMulticast() || r.IsUnspecified()):
		return nil, fmt.Errorf("%s: for parameter remote: %s is not a unicast address (a multicast group is group=)", b.Name(), r)
	case g.IsValid() && !g.IsMulticast():
		return nil, fmt.Errorf("%s: for parameter group: %s is not a multicast address", b.Name(), g)
	case g.IsValid() && parent == nil:
		return nil, fmt.Errorf("%s: a multicast group needs parent=, the link to join it on", b.Name())
	case r.IsValid():
		s.Remote = r
	default:
		s.Remote = g
	}
	if s.Local.IsValid() && s.Remote.IsValid() && s.Local.Is6() != s.Remote.Is6() {
		return nil, fmt.Errorf("%s: local %s and %s are of different address families", b.Name(), s.Local, s.Remote)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if parent != nil {
		if parent.ns() != ns.name {
			return nil, fmt.Errorf("%s: parent %q is in netns %q, not %q: a vxlan sends by a link of its own namespace", b.Name(), parent.state.name, parent.state.ns.Name(), ns.Name())
		}
		if err := parent.mutable(rt); err != nil {
			return nil, fmt.Errorf("%s: parent: %w", b.Name(), err)
		}
		s.Parent, s.ParentNS = parent.state.name, parent.ns()
	}
	if ns.name == kernel.Host {
		if err := hostVxlanAllowed(rt, port, s.Remote); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	l, _, err := createLink(thread, b, s, ns, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// hostVxlanAllowed checks a vxlan, or a VTEP it sends to, for the host
// namespace: every address it sends to must be reached through a link of
// the lab's, and the namespace must have no link of the machine's (but lo),
// since a vxlan's socket takes VXLAN traffic from all of them.
func hostVxlanAllowed(rt *engine.Runtime, port int, vteps ...netip.Addr) error {
	const never = "nsrun never lets a lab's traffic onto the machine's network, nor the machine's into the lab"
	routes, err := hostRoutes(rt)
	if err != nil {
		return err
	}
	for _, a := range vteps {
		if !a.IsValid() {
			continue
		}
		best := -1
		for i, r := range routes {
			if r.Type != "unicast" || r.Table != 0 || (r.Family == 6) != a.Is6() {
				continue
			}
			bits := 0
			if r.Dst.IsValid() {
				if !r.Dst.Contains(a) {
					continue
				}
				bits = r.Dst.Bits()
			}
			if best < 0 || bits > routes[best].Dst.Bits() {
				best = i
			}
		}
		if best >= 0 && routes[best].Dev != "" && !rt.OwnsLink(kernel.Host, routes[best].Dev) {
			r := routes[best]
			dst := "default"
			if r.Dst.IsValid() {
				dst = r.Dst.String()
			}
			return fmt.Errorf("%s is on the machine's network: the host namespace reaches it by its route %s dev %s; %s", a, dst, r.Dev, never)
		}
	}
	for _, r := range routes {
		if r.Dev != "" && r.Dev != "lo" && !rt.OwnsLink(kernel.Host, r.Dev) {
			return fmt.Errorf("a vxlan in the host namespace takes VXLAN traffic (UDP port %d) from every link there, and %s is the machine's; %s: make it in a namespace of the lab's (netns=)", port, r.Dev, never)
		}
	}
	return nil
}

// The forwarding entries a lab adds are undone in any journal replayed
// (down, recover): found by the link, MAC and VTEP, an intent's too.
func init() {
	undo.RegisterTagged(journal.OpFDB, func(k kernel.Kernel, s journal.Step) error {
		e, fk, err := fdbStep(k, s)
		if err != nil {
			return err
		}
		return fk.FDBDel(s.NS, s.Name, e)
	})
	undo.RegisterTagged(journal.OpFDBDel, func(k kernel.Kernel, s journal.Step) error {
		e, fk, err := fdbStep(k, s)
		if err != nil {
			return err
		}
		if err := fk.FDBDel(s.NS, s.Name, e); err != nil { // a copy an earlier try added
			return err
		}
		return ignoreGoneLink(fk.FDBAppend(s.NS, s.Name, e))
	})
}

// ignoreGoneLink is nil for an error saying the link is gone.
func ignoreGoneLink(err error) error {
	if errors.Is(err, kernel.ErrNotFound) {
		return nil
	}
	return err
}

func fdbStep(k kernel.Kernel, s journal.Step) (kernel.FDBEntry, kernel.FDBer, error) {
	e, err := kernel.ParseFDBEntry(s.New)
	if err != nil {
		return e, nil, err
	}
	fk, err := fdberOf(k)
	return e, fk, err
}

// link.fdb(mac, dst=None, master=False) adds a static forwarding entry for
// mac: on a vxlan, the VTEP dst it is behind (the all-zero MAC's entries
// are where it floods to, one per VTEP); with master=True, an entry of
// the bridge the link is a port of, sending mac out of the link. The
// rollback removes it; a removal of the link takes it along.
//
// Equivalent to: bridge -n $ns fdb append $mac dev $link [dst $dst] self|master
func linkFDB(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	l, rt, e, err := fdbArgs(thread, b, args, kwargs)
	if err != nil {
		return nil, err
	}
	if labFDB(rt, l, e) {
		return nil, fmt.Errorf("%s: %q in netns %q has the entry %s already: this lab added it", b.Name(), l.state.name, l.state.ns.Name(), e)
	}
	step := journal.Step{Op: journal.OpFDB, NS: l.ns(), Name: l.state.name, New: e.String()}
	w := says("%s: adding %s to %q in netns %q", b.Name(), e, l.state.name, l.state.ns.Name()).orExists("an entry like it exists")
	if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error {
		fk, err := fdberOf(k)
		if err != nil {
			return err
		}
		return fk.FDBAppend(l.ns(), l.state.name, e)
	}); err != nil {
		return nil, err
	}
	return l, nil
}

// link.fdb_del(mac, dst=None, master=False) removes the entry link.fdb()
// added with these arguments; the rollback puts it back.
//
// Equivalent to: bridge -n $ns fdb del $mac dev $link [dst $dst] self|master
func linkFDBDel(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	l, rt, e, err := fdbArgs(thread, b, args, kwargs)
	if err != nil {
		return nil, err
	}
	if !labFDB(rt, l, e) {
		return nil, fmt.Errorf("%s: %q in netns %q has no entry %s of this lab's: nsrun removes only the entries a lab added", b.Name(), l.state.name, l.state.ns.Name(), e)
	}
	step := journal.Step{Op: journal.OpFDBDel, NS: l.ns(), Name: l.state.name, New: e.String()}
	w := says("%s: removing %s from %q in netns %q", b.Name(), e, l.state.name, l.state.ns.Name())
	if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error {
		fk, err := fdberOf(k)
		if err != nil {
			return err
		}
		return fk.FDBDel(l.ns(), l.state.name, e)
	}); err != nil {
		return nil, err
	}
	return l, nil
}

func fdbArgs(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (*Link, *engine.Runtime, kernel.FDBEntry, error) {
	var mac fdbMAC
	var dst ipAddr
	var master bool
	var e kernel.FDBEntry
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "mac", &mac, "dst?", &dst, "master?", &master); err != nil {
		return nil, nil, e, err
	}
	e = kernel.FDBEntry{MAC: net.HardwareAddr(mac), Dst: netip.Addr(dst), Master: master}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, nil, e, err
	}
	switch {
	case master && l.state.master == "":
		return nil, nil, e, fmt.Errorf("%s: master=True: %q is not a bridge port", b.Name(), l.state.name)
	case e.Dst.IsValid() && (master || l.state.kind != "vxlan"):
		return nil, nil, e, fmt.Errorf("%s: dst= is a vxlan's own entry's (the VTEP a MAC is behind); %q is a %s", b.Name(), l.state.name, l.state.kind)
	case !master && l.state.kind == "vxlan" && !e.Dst.IsValid():
		return nil, nil, e, fmt.Errorf("%s: a vxlan's entry needs dst=, the VTEP the MAC is behind", b.Name())
	case !master && l.state.kind != "vxlan":
		return nil, nil, e, fmt.Errorf("%s: %q is a %s: its entries are its bridge's (master=True)", b.Name(), l.state.name, l.state.kind)
	}
	if l.ns() == kernel.Host && e.Dst.IsValid() {
		if err := hostVxlanAllowed(rt, kernel.VxlanPort, e.Dst); err != nil {
			return nil, nil, e, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	return l, rt, e, nil
}

// labFDB reports whether the lab has entry e on link l (added, and not
// removed since, nor with the link).
func labFDB(rt *engine.Runtime, l *Link, e kernel.FDBEntry) bool {
	has, entry := false, e.String()
	for _, s := range rt.Steps() {
		switch {
		case s.NS != l.ns() || s.Name != l.state.name:
		case s.Op == journal.OpLink || s.Op == journal.OpLinkDel || s.Op == journal.OpMove:
			has = false // a link made anew, or gone: its entries with it
		case s.Op == journal.OpFDB && s.New == entry:
			has = true
		case s.Op == journal.OpFDBDel && s.New == entry:
			has = false
		}
	}
	return has
}

// fdbMAC is a forwarding entry's MAC: any Ethernet address, the all-zero
// one (a vxlan's flooding) and multicast ones included.
type fdbMAC net.HardwareAddr

func (m *fdbMAC) Unpack(v starlark.Value) error {
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want string", v.Type())
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("%q is not a MAC address (want e.g. 52:54:00:0d:84:01, or 00:00:00:00:00:00 for where a vxlan floods)", s)
	}
	*m = fdbMAC(hw)
	return nil
}
