package builtins

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Link is a network interface. Its methods change it and return it, so they
// chain: b.addr("192.168.10.21/24").up().
type Link struct {
	state *linkState // shared by every value of the same link
}

// linkState is what the lab knows of a link; it follows the link when it
// moves.
type linkState struct {
	ns       *Netns
	name     string // the kernel's
	short    string // the recipe's, if another (a host link's, with a prefix)
	kind     string
	mac      string
	up       bool
	master   string
	hairpin  bool
	peer     *Link
	untagged bool // a veth peer born in a namespace of the lab's (see createLink)
	made     bool // by this lab: gone from its model, it was deleted
}

var (
	_ starlark.HasAttrs   = (*Link)(nil)
	_ starlark.Comparable = (*Link)(nil)
)

func (l *Link) String() string {
	return fmt.Sprintf("%s(%q, netns=%s)", l.state.kind, l.state.name, l.state.ns)
}
func (l *Link) Type() string         { return "link" }
func (l *Link) Freeze()              {}
func (l *Link) Truth() starlark.Bool { return true }
func (l *Link) Hash() (uint32, error) {
	h := fnv.New32a()
	h.Write([]byte(l.state.name))
	return h.Sum32(), nil
}

// CompareSameType makes two values of the same link equal.
func (l *Link) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	return sameness(op, l.state == y.(*Link).state, l, y)
}

var linkMethods = map[string]*starlark.Builtin{
	"addr":     starlark.NewBuiltin("addr", linkAddr),
	"addr_del": starlark.NewBuiltin("addr_del", linkAddrDel),
	"delete":   starlark.NewBuiltin("delete", linkDelete),
	"up":       starlark.NewBuiltin("up", linkUp),
	"down":     starlark.NewBuiltin("down", linkDown),
	"master":   starlark.NewBuiltin("master", linkMaster),
	"nomaster": starlark.NewBuiltin("nomaster", linkNomaster),
	"set":      starlark.NewBuiltin("set", linkSet),
	"move":     starlark.NewBuiltin("move", linkMove),
	"fdb":      starlark.NewBuiltin("fdb", linkFDB),
	"fdb_del":  starlark.NewBuiltin("fdb_del", linkFDBDel),
	"shape":    starlark.NewBuiltin("shape", linkShape),
}

func (l *Link) Attr(name string) (starlark.Value, error) {
	switch name {
	case "name": // as the recipe wrote it
		if l.state.short != "" {
			return starlark.String(l.state.short), nil
		}
		return starlark.String(l.state.name), nil
	case "netns":
		return l.state.ns, nil
	case "mac":
		return starlark.String(l.state.mac), nil
	case "kind":
		return starlark.String(l.state.kind), nil
	case "peer":
		if l.state.peer == nil {
			return starlark.None, nil
		}
		return l.state.peer, nil
	}
	return builtinAttr(l, name, linkMethods)
}

func (l *Link) AttrNames() []string {
	return attrNames(linkMethods, "name", "netns", "mac", "kind", "peer")
}

func (l *Link) ns() string { return l.state.ns.name }

// mutable checks that the lab may change the link: nsrun never changes an
// object it did not create.
func (l *Link) mutable(rt *engine.Runtime) error {
	if l.state.made && !rt.MadeLink(l.ns(), l.state.name) {
		return fmt.Errorf("link %q in netns %q was deleted", l.state.name, l.state.ns.Name())
	}
	if rt.OwnsLink(l.ns(), l.state.name) {
		return nil
	}
	return fmt.Errorf("link %q in netns %q was not created by this lab; nsrun changes only what it created", l.state.name, l.state.ns.Name())
}

// linkMethod unpacks the runtime and checks ownership for a Link method.
func linkMethod(thread *starlark.Thread, b *starlark.Builtin) (*Link, *engine.Runtime, error) {
	l := b.Receiver().(*Link)
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, nil, err
	}
	if err := l.mutable(rt); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return l, rt, nil
}

func (l *Link) setUp(thread *starlark.Thread, b *starlark.Builtin, rt *engine.Runtime, up bool) error {
	state := map[bool]string{true: "up", false: "down"}
	ns, name := l.ns(), l.state.name
	step := journal.Step{Op: journal.OpUp, NS: ns, Name: name, Old: state[l.state.up], New: state[up]}
	if !up && l.state.up {
		// The kernel drops the link's IPv6 addresses and the routes
		// through it: what the undo puts back.
		was, err := droppedByDown(rt, l)
		if err != nil {
			return fmt.Errorf("%s: %q in netns %q: %w", b.Name(), name, l.state.ns.Name(), err)
		}
		step.Was = was
	}
	w := says("%s: setting %q %s in netns %q", b.Name(), name, state[up], l.state.ns.Name())
	if err := later(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.LinkSetUp(ns, name, up) }); err != nil {
		return err
	}
	l.state.up = up
	return nil
}

// link.up() brings the link up.
//
// Equivalent to: ip link set $link up
func linkUp(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	if err := l.setUp(thread, b, rt, true); err != nil {
		return nil, err
	}
	return l, nil
}

// link.down() takes the link down.
//
// Equivalent to: ip link set $link down
func linkDown(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	if err := l.setUp(thread, b, rt, false); err != nil {
		return nil, err
	}
	return l, nil
}

// cidrArgs unpacks the addresses a link method is given: one or more, and
// no keyword.
func cidrArgs(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) ([]netip.Prefix, error) {
	if len(kwargs) > 0 {
		return nil, fmt.Errorf("%s: unexpected keyword argument %s", b.Name(), kwargs[0][0])
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("%s: missing argument for cidr", b.Name())
	}
	addrs := make([]netip.Prefix, len(args))
	for i, a := range args {
		var c cidr
		if err := c.Unpack(a); err != nil {
			return nil, fmt.Errorf("%s: for parameter cidr: %v", b.Name(), err)
		}
		addrs[i] = prefix(c)
	}
	return addrs, nil
}

// link.addr(cidr, ...) adds one or more addresses, IPv4 or IPv6; a bare
// address is a host address (/32, /128).
//
// Equivalent to: ip addr add $cidr dev $link
func linkAddr(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	addrs, err := cidrArgs(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	fn, ns, name, where := b.Name(), l.ns(), l.state.name, l.state.ns.Name()
	for _, p := range addrs {
		if ns == kernel.Host {
			// The kernel adds a route to the address's prefix: it is
			// held to the policy of the routes a recipe adds there.
			r := kernel.Route{Dst: p.Masked(), Family: 4, Dev: name}
			if p.Addr().Is6() {
				r.Family = 6
			}
			if err := hostRouteAllowed(rt, r); err != nil {
				return nil, fmt.Errorf("%s: %s on %q in the host namespace: its prefix route: %w", fn, p, name, err)
			}
		}
		step := journal.Step{Op: journal.OpAddr, NS: ns, Name: name, Addr: p}
		w := says("%s: adding %s to %q in netns %q", fn, p, name, where).orExists("the address is already there")
		if err := later(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.AddrAdd(ns, name, p) }); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// link.master(bridge) makes the link a port of a bridge in its namespace.
//
// Equivalent to: ip link set $link master $bridge
func linkMaster(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var br *Link
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "bridge", &br); err != nil {
		return nil, err
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	if br.state.kind != "bridge" {
		return nil, fmt.Errorf("%s: %s is a %s, not a bridge", b.Name(), br.state.name, br.state.kind)
	}
	// Joining a bridge changes it (its ports, its MAC): only the lab's own.
	if err := br.mutable(rt); err != nil {
		return nil, fmt.Errorf("%s: bridge: %w", b.Name(), err)
	}
	if br.ns() != l.ns() {
		return nil, fmt.Errorf("%s: bridge %q is in netns %q but %q is in netns %q; a port must be in its bridge's namespace",
			b.Name(), br.state.name, br.state.ns.Name(), l.state.name, l.state.ns.Name())
	}
	if err := l.setMaster(thread, b, rt, br.state.name); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Link) setMaster(thread *starlark.Thread, b *starlark.Builtin, rt *engine.Runtime, master string) error {
	ns, name := l.ns(), l.state.name
	step := journal.Step{Op: journal.OpMaster, NS: ns, Name: name, Old: l.state.master, New: master}
	w := says("%s: %q in netns %q", b.Name(), name, l.state.ns.Name())
	if err := later(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.LinkSetMaster(ns, name, master) }); err != nil {
		return err
	}
	l.state.master = master
	return nil
}

// link.nomaster() takes the link out of its bridge.
//
// Equivalent to: ip link set $link nomaster
func linkNomaster(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	if err := l.setMaster(thread, b, rt, ""); err != nil {
		return nil, err
	}
	return l, nil
}

// link.set(mtu=, mac=, hairpin=) changes the link's MTU or address, or the
// hairpin mode of a bridge port (a VEPA macvlan's upstream needs it on).
//
// Equivalent to: ip link set $link mtu $mtu address $mac; bridge link set dev $link hairpin on
func linkSet(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var m mtu
	var mac macAddr
	var hairpin starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "mtu?", &m, "mac?", &mac, "hairpin?", &hairpin); err != nil {
		return nil, err
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	if m == 0 && mac == nil && hairpin == starlark.None {
		return nil, fmt.Errorf("%s: nothing to set (give mtu=, mac= or hairpin=)", b.Name())
	}
	if hairpin != starlark.None {
		on, ok := hairpin.(starlark.Bool)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter hairpin: got %s, want bool", b.Name(), hairpin.Type())
		}
		if l.state.master == "" {
			return nil, fmt.Errorf("%s: hairpin: %q is not a bridge port", b.Name(), l.state.name)
		}
		old := map[bool]string{true: "on", false: "off"}[l.state.hairpin]
		step := journal.Step{Op: journal.OpHairpin, NS: l.ns(), Name: l.state.name, Old: old, New: map[bool]string{true: "on", false: "off"}[bool(on)]}
		w := says("%s: setting hairpin on %q", b.Name(), l.state.name)
		if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.LinkSetHairpin(l.ns(), l.state.name, bool(on)) }); err != nil {
			return nil, err
		}
		l.state.hairpin = bool(on)
		if m == 0 && mac == nil {
			return l, nil
		}
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	info, err := k.LinkGet(l.ns(), l.state.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if m != 0 {
		step := journal.Step{Op: journal.OpMTU, NS: l.ns(), Name: l.state.name, Old: strconv.Itoa(info.MTU), New: strconv.Itoa(int(m))}
		w := says("%s: setting the MTU of %q to %d", b.Name(), l.state.name, m)
		if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.LinkSetMTU(l.ns(), l.state.name, int(m)) }); err != nil {
			return nil, err
		}
	}
	if mac != nil {
		step := journal.Step{Op: journal.OpMAC, NS: l.ns(), Name: l.state.name, Old: info.MAC, New: hw(mac).String()}
		w := says("%s: setting the address of %q to %s", b.Name(), l.state.name, hw(mac))
		if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.LinkSetMAC(l.ns(), l.state.name, hw(mac)) }); err != nil {
			return nil, err
		}
		l.state.mac = hw(mac).String()
	}
	return l, nil
}

// link.move(netns) moves the link to another namespace, where it arrives
// down, without addresses and without a master. Moving costs the kernel an
// RCU barrier (~20 ms): create links in place (veth's peer_netns=,
// macvlan's netns=) unless the move is the point.
//
// Equivalent to: ip link set $link netns $netns
func linkMove(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var to *Netns
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &to); err != nil {
		return nil, err
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	if to.name == l.ns() {
		return l, nil
	}
	if err := to.mutable(rt); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	from := l.ns()
	step := journal.Step{Op: journal.OpMove, NS: from, Name: l.state.name, New: to.name}
	if !rt.WouldAdopt(step) {
		switch _, err := k.LinkGet(to.name, l.state.name); {
		case err == nil:
			return nil, fmt.Errorf("%s: a link named %q already exists in netns %q", b.Name(), l.state.name, to.Name())
		case !errors.Is(err, kernel.ErrNotFound):
			return nil, fmt.Errorf("%s: looking for a link named %q in netns %q: %w", b.Name(), l.state.name, to.Name(), err)
		}
	}
	tag := l.state.untagged && (to.name == kernel.Host || !rt.OwnsNetns(to.name))
	w := says("%s: moving %q to netns %q", b.Name(), l.state.name, to.Name())
	if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error {
		if err := k.LinkMove(from, l.state.name, to.name); err != nil {
			return err
		}
		if tag { // out of the lab's namespaces, a link carries the lab's tag
			return k.LinkSetAlias(to.name, l.state.name, rt.Tag())
		}
		return nil
	}); err != nil {
		return nil, err
	}
	l.state.untagged = l.state.untagged && !tag
	l.state.ns, l.state.up, l.state.master = to, false, ""
	return l, nil
}
