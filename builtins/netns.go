package builtins

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Netns is a network namespace: one the lab created, or host().
type Netns struct {
	name  string // the kernel's name (see Runtime.NetnsName); kernel.Host for host()
	short string // the recipe's, if another
	// machine is the machine whose own namespace this is (m.host()), in
	// a lab across machines; "" for host(), or a namespace of the lab's
	// (which the lab places, see engine.Runtime.Place).
	machine string
}

var (
	_ starlark.HasAttrs = (*Netns)(nil)
	_ starlark.Value    = (*Netns)(nil)
)

func (n *Netns) String() string {
	if n.name == kernel.Host {
		return "host()"
	}
	return fmt.Sprintf("netns(%q)", n.name)
}
func (n *Netns) Type() string         { return "netns" }
func (n *Netns) Freeze()              {}
func (n *Netns) Truth() starlark.Bool { return true }
func (n *Netns) Hash() (uint32, error) {
	h := fnv.New32a()
	h.Write([]byte(n.name))
	return h.Sum32(), nil
}

// netnsValue is the recipe's value of the lab's namespace the kernel
// knows as name.
func netnsValue(rt *engine.Runtime, name string) *Netns {
	n := &Netns{name: name}
	if short := rt.ShortNetns(name); short != name {
		n.short = short
	}
	return n
}

// recipeName is the namespace's name as the recipe wrote it ("host" for
// host()).
func (n *Netns) recipeName() string {
	if n.short != "" {
		return n.short
	}
	return n.Name()
}

// Name is the namespace's name as messages show it ("host" for host()).
func (n *Netns) Name() string { return kernel.NSArg(n.name) }

// CompareSameType makes two values of the same namespace equal:
// host() == host(), and a namespace found in a dict by another value of it.
func (n *Netns) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	return sameness(op, n.name == y.(*Netns).name, n, y)
}

// netnsMethods are a namespace's methods: those that change it, and those
// that observe it (inspect.go).
var netnsMethods = map[string]*starlark.Builtin{
	"delete":    starlark.NewBuiltin("delete", netnsDelete),
	"link":      starlark.NewBuiltin("link", netnsLink),
	"route":     starlark.NewBuiltin("route", netnsRoute),
	"route_del": starlark.NewBuiltin("route_del", netnsRouteDel),
	"rule":      starlark.NewBuiltin("rule", netnsRule),
	"rule_del":  starlark.NewBuiltin("rule_del", netnsRuleDel),
	"sysctl":    starlark.NewBuiltin("sysctl", netnsSysctl),

	"write_file": starlark.NewBuiltin("write_file", netnsWriteFile),
	"read_file":  starlark.NewBuiltin("read_file", shared(netnsReadFile, firstNetns)),

	"addrs":     starlark.NewBuiltin("addrs", shared(netnsAddrs, firstNetns)),
	"links":     starlark.NewBuiltin("links", shared(netnsLinks, firstNetns)),
	"neighbors": starlark.NewBuiltin("neighbors", shared(netnsNeighbors, firstNetns)),
	"routes":    starlark.NewBuiltin("routes", shared(netnsRoutes, firstNetns)),
}

func (n *Netns) Attr(name string) (starlark.Value, error) {
	if name == "name" {
		return starlark.String(n.recipeName()), nil
	}
	return builtinAttr(n, name, netnsMethods)
}

func (n *Netns) AttrNames() []string { return attrNames(netnsMethods, "name") }

// mutable checks that the lab may change the namespace or create links in
// it: host(), where it changes only what it made, or a namespace it created.
func (n *Netns) mutable(rt *engine.Runtime) error {
	if n.name == kernel.Host || rt.OwnsNetns(n.name) {
		return nil
	}
	return fmt.Errorf("netns %q was not created by this lab", n.Name())
}

// host() returns the namespace nsrun runs in: the machine's own, or the
// sandbox's root under --sandbox. nsrun changes in it only what the lab
// creates there.
//
// Equivalent to: the root namespace of ip (no -n, no netns exec)
func host(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	return &Netns{name: kernel.Host}, nil
}

// netns(name, lo=True, ipv6=True, private=[], private_owner=None) creates a
// named network namespace and, unless lo=False, brings its loopback up. Each
// path in private is a directory of the node's own: every process nsrun
// starts in the namespace sees a fresh, empty directory there (owned by the
// user private_owner and its group, or root), whether or not the path exists
// on the machine, whose contents live in the lab's directory and go with it
// (see nsexec.Node); nothing of the machine's is changed. With ipv6=False IPv6 is off in
// it from the start: its links have no link-local address and send no
// duplicate address detection, router solicitation or MLD, whose floods
// through a shared bridge cost every host of a large lab time that grows
// with the lab; IPv6 addresses and routes in it are refused while planning.
//
// Equivalent to: ip netns add $name;
// [ip netns exec $name sysctl -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1;]
// ip -n $name link set lo up
//
// In a lab across machines, on=m places the namespace on machine m (see
// machine()); by default it is on the machine nsrun runs on.
func netns(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name nsName
	lo, ipv6 := true, true
	var private pathList
	var who owner
	var on onArg
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "lo?", &lo, "ipv6?", &ipv6,
		"private?", &private, "private_owner?", &who, "on?", &on); err != nil {
		return nil, err
	}
	if err := checkPrivate(private); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	ns := rt.NetnsName(string(name))
	if rt.OwnsNetns(ns) {
		return nil, fmt.Errorf("%s: a namespace named %q already exists: this recipe made it (names must be unique)", b.Name(), ns)
	}
	if on.name != "" {
		if err := rt.Place(ns, "", on.name); err != nil {
			return nil, fmt.Errorf("%s: for parameter on: %w", b.Name(), err)
		}
	}
	spec, fn := kernel.NetnsSpec{Name: ns, Tag: rt.Tag(), LoUp: lo, NoIPv6: !ipv6}, b.Name()
	err = rt.Later(thread, journal.Step{Op: journal.OpNetns, Name: ns, Alias: spec.Tag}, func(k kernel.Kernel, s *journal.Step) (err error) {
		id, err := k.NetnsAdd(spec)
		s.Ino, s.Mnt, s.Pin = id.Ino, id.Mnt, id.Pin
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: a namespace named %q already exists; nsrun never adopts an object it did not create", fn, ns)
		}
		return says("%s: creating %q", fn, ns).wrap(err)
	})
	if err != nil {
		return nil, err
	}
	if err := privateDirs(thread, rt, ns, private, who); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return netnsValue(rt, ns), nil
}

// ns.link(name) returns a link that exists in the namespace, such as "lo".
// The lab may change it only if the lab created it or the namespace.
//
// Equivalent to: ip -n $ns link show $name
func netnsLink(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := b.Receiver().(*Netns)
	var name ifName
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	info, err := k.LinkGet(n.name, string(name))
	if errors.Is(err, kernel.ErrNotFound) {
		return nil, fmt.Errorf("%s: there is no link %q in netns %q", b.Name(), name, n.Name())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return &Link{state: &linkState{ns: n, name: info.Name, kind: info.Kind, mac: info.MAC, up: info.Up, master: info.Master}}, nil
}
