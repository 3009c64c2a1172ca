package builtins

import (
	"fmt"
	"time"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// bridge(name, netns=host(), mac=, mtu=, stp=False, forward_delay=None)
// creates a Linux bridge, with the kernel's spanning tree if stp (a lab
// with loops needs it), whose ports forward after twice forward_delay
// (2s to 30s; the kernel's 15s by default). Ports join it with
// link.master(bridge).
//
// In a lab across machines, on=m puts the bridge in machine m's own
// namespace (m.host()) when no netns is given; its ports on other
// machines join it over VXLAN (see veth()).
//
// Equivalent to: ip -n $netns link add $name type bridge [stp_state 1
// [forward_delay $centiseconds]]
func bridge(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name ifName
	var nsA nsArg
	var mac macAddr
	var m mtu
	var stp bool
	var delay duration
	var on onArg
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"name", &name, "netns?", &nsA, "mac?", &mac, "mtu?", &m, "stp?", &stp, "forward_delay?", &delay, "on?", &on); err != nil {
		return nil, err
	}
	s := kernel.LinkSpec{Kind: "bridge", MAC: hw(mac), MTU: int(m), STP: stp}
	if delay != 0 {
		d := time.Duration(delay)
		if !stp {
			return nil, fmt.Errorf("%s: forward_delay= is the spanning tree's (stp=True)", b.Name())
		}
		if d < 2*time.Second || d > 30*time.Second || d%(10*time.Millisecond) != 0 {
			return nil, fmt.Errorf("%s: for parameter forward_delay: %s is not a forward delay (2s to 30s, in hundredths of a second)", b.Name(), d)
		}
		s.ForwardDelay = int(d / (10 * time.Millisecond))
	}
	ns := nsOr(nsA.ns)
	if on.name != "" {
		rt, err := engine.FromThread(thread)
		if err != nil {
			return nil, err
		}
		if ns, err = placeHostLink(rt, ns, nsA.ns != nil, string(name), on.name); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	s.NS, s.Name = ns.name, string(name)
	l, _, err := createLink(thread, b, s, ns, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}
