package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// bridge(name, netns=host(), mac=, mtu=, stp=False) creates a Linux bridge.
// Ports join it with link.master(bridge).
//
// Equivalent to: ip -n $netns link add $name type bridge
func bridge(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name ifName
	var nsA nsArg
	var mac macAddr
	var m mtu
	var stp bool
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"name", &name, "netns?", &nsA, "mac?", &mac, "mtu?", &m, "stp?", &stp); err != nil {
		return nil, err
	}
	if stp {
		return nil, fmt.Errorf("%s: stp=True is not supported yet", b.Name())
	}
	ns := nsOr(nsA.ns)
	l, _, err := createLink(thread, b, kernel.LinkSpec{Kind: "bridge", NS: ns.name, Name: string(name), MAC: hw(mac), MTU: int(m)}, ns, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}
