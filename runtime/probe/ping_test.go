package probe_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/probe"
)

func ping(t *testing.T, l *lab, ns, dst string, count int, timeout time.Duration) probe.Result {
	t.Helper()
	r, err := probe.Ping(context.Background(), l.k.Path(ns), netip.MustParseAddr(dst),
		probe.Options{Count: count, Interval: 20 * time.Millisecond, Timeout: timeout})
	if err != nil {
		t.Fatalf("ping %s from %s: %v", dst, ns, err)
	}
	t.Logf("ping %s from %s: %+v", dst, ns, r)
	return r
}

func wantReplies(t *testing.T, r probe.Result, n int) {
	t.Helper()
	if r.Sent != n || r.Received != n || len(r.RTT) != n || r.Err != "" {
		t.Errorf("ping %s: got %d sent, %d received, %d RTTs, error %q; want %d, %d, %d, none", r.Dst, r.Sent, r.Received, len(r.RTT), r.Err, n, n, n)
	}
}

// A namespace cannot reach even its own address while its loopback is
// down: local delivery goes through lo.
func TestPingOwnAddressNeedsLo(t *testing.T) {
	l := newLab(t)
	l.netns("pa", false)
	l.veth("pa", "v0", "pa", "v1")
	l.addr("pa", "v0", "10.9.0.1/24")
	l.addr("pa", "v0", "fd09::1/64")

	for _, dst := range []string{"10.9.0.1", "fd09::1"} {
		if r := ping(t, l, "pa", dst, 2, 300*time.Millisecond); r.Received != 0 {
			t.Errorf("ping %s with lo down: %d replies, want none", dst, r.Received)
		}
	}
	l.up("pa", "lo")
	for _, dst := range []string{"10.9.0.1", "fd09::1", "127.0.0.1", "::1"} {
		wantReplies(t, ping(t, l, "pa", dst, 2, time.Second), 2)
	}
}

// Two /32 addresses on a veth: no route, so the kernel refuses to send;
// a route on one side only gets the request there, but no reply back;
// routes on both sides make it work.
func TestPingPeerWithoutRoute(t *testing.T) {
	l := newLab(t)
	l.netns("pa", true)
	l.netns("pb", true)
	l.veth("pa", "va", "pb", "vb")
	l.addr("pa", "va", "10.9.1.1/32")
	l.addr("pb", "vb", "10.9.1.2/32")

	r := ping(t, l, "pa", "10.9.1.2", 3, 300*time.Millisecond)
	if r.Sent != 0 || r.Received != 0 || r.Err != "network is unreachable" {
		t.Errorf("no route: got %+v, want 0 sent and error %q", r, "network is unreachable")
	}

	l.route("pa", kernel.Route{Dst: netip.MustParsePrefix("10.9.1.2/32"), Family: 4, Dev: "va"})
	r = ping(t, l, "pa", "10.9.1.2", 2, 300*time.Millisecond)
	if r.Sent != 2 || r.Received != 0 {
		t.Errorf("route on one side: got %+v, want 2 sent, 0 received", r)
	}

	l.route("pb", kernel.Route{Dst: netip.MustParsePrefix("10.9.1.1/32"), Family: 4, Dev: "vb"})
	wantReplies(t, ping(t, l, "pa", "10.9.1.2", 3, time.Second), 3)
}

// When address resolution gets no answer, the kernel reports "destination
// host unreachable" for each queued request, from the sender's own address.
func TestPingHostUnreachable(t *testing.T) {
	l := newLab(t)
	l.netns("pa", true)
	l.netns("pb", true)
	l.veth("pa", "va", "pb", "vb")
	l.fastNeigh("pa", "va")
	l.addr("pa", "va", "10.9.2.1/24")
	l.addr("pa", "va", "fd09:2::1/64")
	l.addr("pb", "vb", "10.9.2.2/24")
	l.addr("pb", "vb", "fd09:2::2/64")

	for _, c := range []struct{ dst, from string }{{"10.9.2.9", "10.9.2.1"}, {"fd09:2::9", "fd09:2::1"}} {
		r := ping(t, l, "pa", c.dst, 2, 5*time.Second)
		if r.Sent != 2 || r.Received != 0 || r.Err != "destination host unreachable" || r.ErrFrom.String() != c.from {
			t.Errorf("ping %s: got %+v, want 2 sent, 0 received, destination host unreachable from %s", c.dst, r, c.from)
		}
	}
	wantReplies(t, ping(t, l, "pa", "10.9.2.2", 3, time.Second), 3)
	wantReplies(t, ping(t, l, "pa", "fd09:2::2", 3, time.Second), 3)
	// A link-local address names its link; nobody has this one.
	if r := ping(t, l, "pa", "fe80::9%va", 1, 5*time.Second); r.Sent != 1 || r.Err != "destination host unreachable" {
		t.Errorf("ping fe80::9%%va: got %+v, want 1 sent, destination host unreachable", r)
	}
}

// Several pings at once from the same namespace each count only their own
// replies, though every raw ICMP socket of the namespace sees them all.
func TestPingConcurrent(t *testing.T) {
	l := newLab(t)
	l.netns("pa", true)
	l.netns("pb", true)
	l.veth("pa", "va", "pb", "vb")
	l.addr("pa", "va", "10.9.3.1/24")
	l.addr("pb", "vb", "10.9.3.2/24")
	l.addr("pb", "vb", "10.9.3.3/24")

	dsts := []string{"10.9.3.2", "10.9.3.3", "10.9.3.2", "10.9.3.1", "10.9.3.3"}
	res := make(chan probe.Result)
	for _, d := range dsts {
		go func() {
			r, err := probe.Ping(context.Background(), l.k.Path("pa"), netip.MustParseAddr(d),
				probe.Options{Count: 4, Interval: 10 * time.Millisecond, Timeout: time.Second})
			if err != nil {
				t.Error(err)
			}
			res <- r
		}()
	}
	for range dsts {
		wantReplies(t, <-res, 4)
	}
}

func TestPingErrors(t *testing.T) {
	l := newLab(t)
	_, err := probe.Ping(context.Background(), l.k.Path("nosuch"), netip.MustParseAddr("10.0.0.1"), probe.Options{Count: 1, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("ping in a missing namespace: got %v", err)
	}
	_, err = probe.Ping(context.Background(), "", netip.MustParseAddr("fe80::1"), probe.Options{Count: 1, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "needs its link") {
		t.Errorf("link-local without zone: got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = probe.Ping(ctx, "", netip.MustParseAddr("127.0.0.1"), probe.Options{Count: 3, Interval: time.Second, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("cancelled ping: got %v", err)
	}
}
