package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// veth(name, peer, netns=host(), peer_netns=netns, mac=, peer_mac=, mtu=)
// creates a veth pair and returns its two ends. Each end is created directly
// in its namespace, in one request: never made in the host and moved, which
// would cost an RCU barrier and could strand it if the run died in between.
//
// In a lab across machines, a veth whose ends are on two machines is a
// point-to-point VXLAN link between them: each end a vxlan in its
// namespace (MTU 1450 unless mtu= says), its socket in its machine's own
// namespace, on the machines' underlay addresses and a VNI derived from
// the lab's and the link's names.
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
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	for _, e := range []struct {
		ns   *Netns
		name ifName
	}{{ns, name}, {peerNS, peer}} {
		if e.ns.name == kernel.Host && e.ns.machine != "" { // a machine's own namespace
			if err := rt.Place(kernel.Host, rt.HostLinkOf(string(e.name)), e.ns.machine); err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
		}
	}
	if nsMachine(rt, ns) != nsMachine(rt, peerNS) {
		return crossVeth(thread, b, rt,
			kernel.LinkSpec{NS: ns.name, Name: string(name), MAC: hw(mac), MTU: int(m)},
			kernel.LinkSpec{NS: peerNS.name, Name: string(peer), MAC: hw(peerMAC)}, ns, peerNS)
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
