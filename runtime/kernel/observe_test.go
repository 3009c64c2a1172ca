package kernel

// The real-kernel tests of Observer are in runtime/probe (they need the
// sandbox of a TestMain); these need no root.

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestDumpRetriesInterrupted(t *testing.T) {
	calls := 0
	got, err := dump("links", "red", func() ([]int, error) {
		calls++
		if calls < 3 {
			return []int{1}, netlink.ErrDumpInterrupted // partial
		}
		return []int{1, 2}, nil
	})
	if err != nil || len(got) != 2 || calls != 3 {
		t.Errorf("got %v, %v after %d calls; want the full dump after 3", got, err, calls)
	}

	calls = 0
	got, err = dump("links", "red", func() ([]int, error) {
		calls++
		return []int{1}, netlink.ErrDumpInterrupted
	})
	if !errors.Is(err, netlink.ErrDumpInterrupted) || got != nil || calls != dumpRetries {
		t.Errorf("always interrupted: got %v, %v after %d calls; want no result and the error", got, err, calls)
	}
	if want := `listing links in netns "red": `; err == nil || err.Error()[:len(want)] != want {
		t.Errorf("error %q, want prefix %q", err, want)
	}
}

func TestRecorderObserves(t *testing.T) {
	r := NewRecorder()
	if _, err := r.NetnsAdd(NetnsSpec{Name: "red", Tag: "nsrun:t"}); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.LinkAdd(LinkSpec{NS: "red", Name: "v1", Kind: "veth", PeerNS: Host, PeerName: "v0"}))
	must(r.LinkSetUp("red", "lo", true))
	for _, p := range []string{"fd00::1/64", "10.0.0.1/24", "fe80::1/64", "127.0.0.2/8"} {
		must(r.AddrAdd("red", "v1", netip.MustParsePrefix(p)))
	}

	links, err := r.Links("red")
	must(err)
	if got := fmt.Sprint(links); got != "[{red lo loopback 0 00:00:00:00:00:00 65536 true  nsrun:t  false [ ] [ ]  []} {red v1 veth 0  1500 false    false [ ] [ ]  []}]" {
		t.Errorf("links: %s", got)
	}
	addrs, err := r.Addrs("red")
	must(err)
	if got := fmt.Sprint(addrs); got != "[{v1 10.0.0.1/24 global false false} {v1 127.0.0.2/8 host false false} {v1 fd00::1/64 global false false} {v1 fe80::1/64 link false false}]" {
		t.Errorf("addrs: %s", got)
	}
	if hosts, err := r.Addrs(Host); err != nil || len(hosts) != 0 {
		t.Errorf("host addrs: %v, %v", hosts, err)
	}
	// The kernel's routes to the addresses' subnets.
	if rs, err := r.Routes("red"); err != nil || fmt.Sprint(rs) != "[{127.0.0.0/8 4 0 invalid IP v1 kernel 0 unicast 127.0.0.2} {10.0.0.0/24 4 0 invalid IP v1 kernel 0 unicast 10.0.0.1} {fd00::/64 6 0 invalid IP v1 kernel 256 unicast invalid IP} {fe80::/64 6 0 invalid IP v1 kernel 256 unicast invalid IP}]" {
		t.Errorf("routes: %v, %v", rs, err)
	}
	if ns, err := r.Neighbors("red"); err != nil || len(ns) != 0 {
		t.Errorf("neighbors: %v, %v", ns, err)
	}
	for name, f := range map[string]func(string) error{
		"links":     func(ns string) error { _, err := r.Links(ns); return err },
		"addrs":     func(ns string) error { _, err := r.Addrs(ns); return err },
		"routes":    func(ns string) error { _, err := r.Routes(ns); return err },
		"neighbors": func(ns string) error { _, err := r.Neighbors(ns); return err },
	} {
		if err := f("blue"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a missing namespace: %v", name, err)
		}
	}
}

func TestNeighState(t *testing.T) {
	for s, want := range map[int]string{
		netlink.NUD_REACHABLE: "REACHABLE", netlink.NUD_STALE: "STALE", netlink.NUD_FAILED: "FAILED",
		netlink.NUD_INCOMPLETE: "INCOMPLETE", netlink.NUD_PERMANENT: "PERMANENT", 0x200: "0x200",
	} {
		if got := NeighState(s); got != want {
			t.Errorf("NeighState(%#x) = %q, want %q", s, got, want)
		}
	}
}

// A stacked link's parent and mode are model data, and follow the parent
// when it moves.
func TestRecorderParent(t *testing.T) {
	r := NewRecorder()
	r.NetnsAdd(NetnsSpec{Name: "a", Tag: "nsrun:t"})
	r.LinkAdd(LinkSpec{Name: "up0", Kind: "veth", PeerNS: Host, PeerName: "up1"})
	if err := r.LinkAdd(LinkSpec{NS: "a", Name: "mv0", Kind: "macvlan", Parent: "up0", Mode: "bridge"}); err != nil {
		t.Fatal(err)
	}
	r.LinkMove(Host, "up0", "a")
	if ns, p, mode, ok := r.Parent("a", "mv0"); !ok || ns != "a" || p != "up0" || mode != "bridge" {
		t.Errorf("Parent = %q %q %q %v", ns, p, mode, ok)
	}
	if _, _, _, ok := r.Parent(Host, "up1"); ok {
		t.Errorf("a veth has a parent")
	}
}
