package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// dummy(name, netns=host(), mac=, mtu=) creates a dummy link (where the
// kernel has the type; otherwise the error says so).
//
// Equivalent to: ip -n $netns link add $name type dummy
func dummy(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name ifName
	var nsA nsArg
	var mac macAddr
	var m mtu
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "netns?", &nsA, "mac?", &mac, "mtu?", &m); err != nil {
		return nil, err
	}
	ns := nsOr(nsA.ns)
	l, _, err := createLink(thread, b, kernel.LinkSpec{Kind: "dummy", NS: ns.name, Name: string(name), MAC: hw(mac), MTU: int(m)}, ns, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// vlan(name, parent, id, netns=parent's) creates an 802.1Q VLAN link on
// parent (where the kernel has the type; otherwise the error says so).
//
// Equivalent to: ip link add $name link $parent type vlan id $id
func vlan(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name ifName
	var parent *Link
	var id int
	var nsA nsArg
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "parent", &parent, "id", &id, "netns?", &nsA); err != nil {
		return nil, err
	}
	if id < 1 || id > 4094 {
		return nil, fmt.Errorf("%s: for parameter id: %d is not a VLAN id (1 to 4094)", b.Name(), id)
	}
	ns, err := onLabParent(thread, b, parent, nsA)
	if err != nil {
		return nil, err
	}
	l, _, err := createLink(thread, b, kernel.LinkSpec{Kind: "vlan", NS: ns.name, Name: string(name), Parent: parent.state.name, ParentNS: parent.ns(), VlanID: id}, ns, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}
