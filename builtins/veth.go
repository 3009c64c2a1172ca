package builtins

import (
	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// veth(name, peer, netns=host(), peer_netns=netns, mac=, peer_mac=, mtu=)
// creates a veth pair and returns its two ends. Each end is created directly
// in its namespace, in one request: never made in the host and moved, which
// would cost an RCU barrier and could strand it if the run died in between.
//
// Equivalent to: ip -n $netns link add $name type veth peer name $peer netns $peer_netns
func veth(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, peer ifName
	var nsA, peerA nsArg
	var mac, peerMAC macAddr
	var m mtu
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"name", &name, "peer", &peer, "netns?", &nsA, "peer_netns?", &peerA,
		"mac?", &mac, "peer_mac?", &peerMAC, "mtu?", &m); err != nil {
		return nil, err
	}
	ns := nsOr(nsA.ns)
	peerNS := peerA.ns
	if peerNS == nil {
		peerNS = ns
	}
	a, p, err := createLink(thread, b, kernel.LinkSpec{
		Kind: "veth", NS: ns.name, Name: string(name), MAC: hw(mac), MTU: int(m),
		PeerNS: peerNS.name, PeerName: string(peer), PeerMAC: hw(peerMAC),
	}, ns, peerNS)
	if err != nil {
		return nil, err
	}
	return starlark.Tuple{a, p}, nil
}
