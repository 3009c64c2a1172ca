package builtins

import (
	"fmt"
	"slices"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
)

var macvlanModes = []string{"private", "vepa", "bridge", "passthru"}

// macvlan(name, parent, mode="bridge", netns=parent's, mac=, mtu=) creates a
// macvlan on parent, directly in netns. Modes: private (macvlans of one parent
// cannot talk), vepa (they talk only through a hairpin upstream), bridge
// (they talk directly), passthru (one macvlan takes the parent over).
//
// Equivalent to: ip link add $name link $parent netns $netns type macvlan mode $mode
func macvlan(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return onParent(thread, b, args, kwargs, "macvlan")
}

// macvtap(...) is macvlan with a tap character device; same arguments.
func macvtap(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return onParent(thread, b, args, kwargs, "macvtap")
}

// onLabParent checks that a link to be stacked on parent (a macvlan, a
// vlan) may be: its traffic leaves through its parent, and only a parent of
// the lab's own keeps it among the lab's namespaces. It returns the
// namespace the link goes to: ns, or by default the parent's.
func onLabParent(thread *starlark.Thread, b *starlark.Builtin, parent *Link, ns nsArg) (*Netns, error) {
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if err := parent.mutable(rt); err != nil {
		return nil, fmt.Errorf("%s: parent: %w", b.Name(), err)
	}
	if parent.state.name == "lo" || parent.state.kind == "loopback" {
		// The kernel says only "invalid argument".
		return nil, fmt.Errorf("%s: parent: %q in netns %q is a loopback: a %s needs an Ethernet parent (a veth, a bridge, a macvlan)", b.Name(), parent.state.name, parent.state.ns.Name(), b.Name())
	}
	if ns.ns == nil {
		return parent.state.ns, nil
	}
	return ns.ns, nil
}

func onParent(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, kind string) (starlark.Value, error) {
	var name ifName
	var parent *Link
	var nsA nsArg
	var mac macAddr
	var m mtu
	mode := "bridge"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"name", &name, "parent", &parent, "mode?", &mode, "netns?", &nsA, "mac?", &mac, "mtu?", &m); err != nil {
		return nil, err
	}
	if !slices.Contains(macvlanModes, mode) {
		return nil, fmt.Errorf("%s: for parameter mode: %q is not a mode (want private, vepa, bridge or passthru)", b.Name(), mode)
	}
	ns, err := onLabParent(thread, b, parent, nsA)
	if err != nil {
		return nil, err
	}
	l, _, err := createLink(thread, b, kernel.LinkSpec{
		Kind: kind, NS: ns.name, Name: string(name), MAC: hw(mac), MTU: int(m),
		Parent: parent.state.name, ParentNS: parent.ns(), Mode: mode,
	}, ns, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}
