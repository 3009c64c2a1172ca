package builtins

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"go.starlark.net/starlark"
)

func prefix(c cidr) netip.Prefix { return netip.Prefix(c) }
func hw(m macAddr) net.HardwareAddr {
	if m == nil {
		return nil
	}
	return net.HardwareAddr(m)
}

// nsOr returns the namespace argument, or host() if none was given.
func nsOr(n *Netns) *Netns {
	if n == nil {
		return &Netns{name: kernel.Host}
	}
	return n
}

// free checks that no link of that name exists in ns, so that a collision
// names the object instead of surfacing as the kernel's "file exists". In a
// namespace of the lab's own, the lab's record answers without asking the
// kernel: what is there, the lab put there (lo aside).
func free(rt *engine.Runtime, ns *Netns, name string) error {
	var err error
	switch {
	case ns.name != kernel.Host && rt.OwnsNetns(ns.name):
		if name != "lo" && !rt.MadeLink(ns.name, name) {
			return nil
		}
	case rt.Planned && !rt.MadeLink(ns.name, name):
		return nil // checked by the preflight; one made since fails the creation
	default:
		var k kernel.Kernel
		if k, err = rt.Kernel(); err != nil {
			return err
		}
		_, err = k.LinkGet(ns.name, name)
	}
	switch {
	case err == nil && rt.MadeLink(ns.name, name):
		return fmt.Errorf("a link named %q already exists in netns %q: this recipe made it (names must be unique)", name, ns.Name())
	case err == nil:
		return fmt.Errorf("a link named %q already exists in netns %q; nsrun never adopts an object it did not create", name, ns.Name())
	case errors.Is(err, kernel.ErrNotFound):
		return nil
	default:
		return err
	}
}

// createLink creates the link s (placing it, tagging it, giving it a
// deterministic MAC unless one was given), records it and returns its value.
// For a veth it returns both ends.
func createLink(thread *starlark.Thread, b *starlark.Builtin, s kernel.LinkSpec, ns, peerNS *Netns) (*Link, *Link, error) {
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, nil, err
	}
	short, peerShort := s.Name, s.PeerName
	if s.NS == kernel.Host { // scoped by the prefix (see Runtime.HostLinkName)
		if s.Name, err = rt.HostLinkName(s.Name); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	if s.Kind == "veth" && s.PeerNS == kernel.Host {
		if s.PeerName, err = rt.HostLinkName(s.PeerName); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	ends := []struct {
		ns   *Netns
		name string
	}{{ns, s.Name}}
	if s.Kind == "veth" {
		if s.PeerName == s.Name && s.PeerNS == s.NS {
			return nil, nil, fmt.Errorf("%s: both ends are named %q in netns %q", b.Name(), s.Name, ns.Name())
		}
		ends = append(ends, struct {
			ns   *Netns
			name string
		}{peerNS, s.PeerName})
	}
	for _, e := range ends {
		if err := e.ns.mutable(rt); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	// A vlan shares its parent's MAC; a passthru macvlan takes its parent's
	// (setting one would change the parent's).
	if s.MAC == nil && s.Kind != "vlan" && s.Mode != "passthru" {
		s.MAC = rt.MAC(s.NS, s.Name)
	}
	if s.Kind == "veth" && s.PeerMAC == nil {
		s.PeerMAC = rt.MAC(s.PeerNS, s.PeerName)
	}
	s.Alias = rt.Tag()
	if s.NS == kernel.Host {
		s.Group = kernel.GroupOf(s.Alias) // deleted together at teardown
	}
	step := journal.Step{Op: journal.OpLink, Kind: s.Kind, NS: s.NS, Name: s.Name, Alias: s.Alias, MAC: macString(s.MAC)}
	if s.SocketHost {
		step.VNI = s.VNI // checked against the machine's own before any change (see package machines)
	}
	if s.Kind == "veth" {
		step.PeerNS, step.PeerName = s.PeerNS, s.PeerName
		// A peer born in a namespace of the lab's needs no tag of its
		// own (one request less per host); it is known by its MAC.
		if s.PeerNS != kernel.Host && rt.OwnsNetns(s.PeerNS) {
			s.PeerUntagged, step.PeerMAC = true, s.PeerMAC.String()
		}
	}
	if s.Parent != "" {
		step.ParentNS, step.Parent, step.Mode = s.ParentNS, s.Parent, s.Mode
		if s.Kind == "vlan" {
			step.Mode = fmt.Sprint(s.VlanID)
		}
	}
	switch s.Kind { // what makes it the link it is
	case "vxlan":
		step.Mode = s.VxlanArgs()
	case "bridge":
		step.Mode = s.BridgeArgs()
	}
	if !rt.WouldAdopt(step) { // else the lab has it: it is this link
		for _, e := range ends {
			if err := free(rt, e.ns, e.name); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
		}
	}
	w := says("%s: creating %q in netns %q", b.Name(), s.Name, ns.Name()).
		orExists("a link of that name exists (created meanwhile by someone else, or by a command the recipe ran?)")
	if err := later(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.LinkAdd(s) }); err != nil {
		return nil, nil, err
	}
	mac := macString(s.MAC)
	if mac == "" { // the kernel chose it (a vlan's, a passthru macvlan's: the parent's)
		k, err := rt.Kernel()
		if err != nil {
			return nil, nil, err
		}
		info, err := k.LinkGet(s.NS, s.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		mac = info.MAC
	}
	a := &Link{state: &linkState{ns: ns, name: s.Name, kind: s.Kind, mac: mac, made: true}}
	if short != s.Name {
		a.state.short = short
	}
	if s.Kind != "veth" {
		return a, nil, nil
	}
	p := &Link{state: &linkState{ns: peerNS, name: s.PeerName, kind: s.Kind, mac: s.PeerMAC.String(), peer: a, untagged: s.PeerUntagged, made: true}}
	if peerShort != s.PeerName {
		p.state.short = peerShort
	}
	a.state.peer = p
	return a, p, nil
}

func macString(m net.HardwareAddr) string {
	if m == nil {
		return ""
	}
	return m.String()
}
