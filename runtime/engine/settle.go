package engine

import (
	"context"
	"time"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// A link set up is not at once a link that carries packets: the kernel
// attaches its queue when its carrier comes up, in a deferred job that can
// run up to a second later, and drops what is sent before (the first ARP
// of a ping, say). An IPv6 address is tentative, and unusable, until its
// duplicate address detection is done. So the run notes the namespaces
// whose links it changed, and before a probe (ping, capture, exec_in, ...)
// waits until the links there are operational — a dump of each such
// namespace's links, repeated while one is coming up, not a fixed sleep.

// settleLimit bounds the wait: a link that never comes up (a peer the
// recipe left down, a bridge without ports) does not hold the run.
const settleLimit = 10 * time.Second

// settlePoll is how often a namespace's links are looked at again.
const settlePoll = 5 * time.Millisecond

// touched notes the namespaces whose links step s changed (while rt.mu is
// held).
func (rt *Runtime) touched(s journal.Step) {
	if s.Away { // another machine's to wait for
		return
	}
	if rt.unsettled == nil {
		rt.unsettled, rt.tentative = map[string]bool{}, map[string]bool{}
	}
	switch s.Op {
	case journal.OpLink:
		rt.unsettled[s.NS] = true
		if s.PeerName != "" {
			rt.unsettled[s.PeerNS] = true
		}
	case journal.OpUp, journal.OpMaster:
		rt.unsettled[s.NS] = true
	case journal.OpMove:
		rt.unsettled[s.New] = true
	case journal.OpAddr:
		if s.Addr.Addr().Is6() {
			rt.tentative[s.NS] = true
		}
	case journal.OpNetns:
		rt.unsettled[s.Name] = true // its lo
	}
}

// Operational waits until the links in the namespaces the run changed are
// operational: every link that is up and has a carrier to wait for (a veth,
// a macvlan) is "up" in the kernel's eyes, or its lower layer is down (a
// peer the recipe left down). With v6, it also waits until no IPv6 address
// the run added is tentative. It gives up quietly after settleLimit.
func (rt *Runtime) Operational(ctx context.Context, v6 bool) error {
	k, err := rt.Kernel()
	if err != nil {
		return err
	}
	view, ok := kernel.As[kernel.View](k)
	if !ok {
		return nil
	}
	if _, planning := kernel.As[kernel.Planner](k); planning {
		return nil
	}
	rt.mu.Lock()
	links, addrs := rt.unsettled, map[string]bool{}
	rt.unsettled = map[string]bool{}
	if v6 {
		addrs, rt.tentative = rt.tentative, map[string]bool{}
	}
	rt.mu.Unlock()
	deadline := time.Now().Add(settleLimit)
	for ns := range links {
		for !linksUp(view, ns) && time.Now().Before(deadline) {
			if err := pause(ctx); err != nil {
				return err
			}
		}
	}
	for ns := range addrs {
		for tentative(view, ns) && time.Now().Before(deadline) {
			if err := pause(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func pause(ctx context.Context) error {
	t := time.NewTimer(settlePoll)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// carrierKinds are the kinds whose operational state follows their carrier.
var carrierKinds = map[string]bool{"veth": true, "macvlan": true, "macvtap": true, "vlan": true, "bridge": true}

// linksUp reports whether every link of ns that is up and has a carrier is
// operational; a namespace that is gone has nothing to wait for.
func linksUp(k kernel.View, ns string) bool {
	links, err := k.Links(ns)
	if err != nil {
		return true
	}
	for _, l := range links {
		// The carrier is up at once, the operational state (and the
		// queue) only once the kernel's deferred job has run: until then
		// a new link's state reads "unknown". A link with no carrier (a
		// peer or parent down, a bridge without ports) is not waited for,
		// nor a kind whose state stays unknown (lo).
		if l.Up && l.Carrier && carrierKinds[l.Kind] && l.Oper != "up" {
			return false
		}
	}
	return true
}

// tentative reports whether an IPv6 address of ns is still tentative.
func tentative(k kernel.View, ns string) bool {
	addrs, err := k.Addrs(ns)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.Tentative {
			return true
		}
	}
	return false
}
