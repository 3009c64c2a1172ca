package probe_test

// The real-kernel tests of kernel.Observer live here, where a sandboxed
// TestMain is: they compare what it reads with what iproute2 shows.

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

func ipj(t *testing.T, ns string, v any, args ...string) {
	t.Helper()
	if err := json.Unmarshal([]byte(nstest.Ip(t, ns, append([]string{"-j"}, args...)...)), v); err != nil {
		t.Fatalf("ip -j %s: %v", strings.Join(args, " "), err)
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	slices.Sort(want)
	if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
		t.Errorf("%s:\n%s\nip shows:\n%s", what, g, w)
	}
	if !slices.IsSorted(got) {
		t.Errorf("%s are not sorted:\n%s", what, strings.Join(got, "\n"))
	}
}

func TestObserverAsIpSeesIt(t *testing.T) {
	l := newLab(t)
	l.netns("oa", true)
	l.netns("ob", true)
	l.veth("oa", "va", "ob", "vb")
	if err := l.k.LinkAdd(kernel.LinkSpec{NS: "oa", Name: "br0", Kind: "bridge"}); err != nil {
		t.Fatal(err)
	}
	l.veth("oa", "vp", "oa", "vq")
	if err := l.k.LinkSetMaster("oa", "vp", "br0"); err != nil {
		t.Fatal(err)
	}
	l.addr("oa", "va", "10.9.5.1/24")
	l.addr("oa", "va", "fd09:5::1/64")
	l.addr("oa", "br0", "10.9.6.1/24")
	l.addr("ob", "vb", "10.9.5.2/24")
	l.addr("ob", "vb", "fd09:5::2/64")
	l.route("oa", kernel.Route{Family: 4, Via: netip.MustParseAddr("10.9.5.2")})
	l.route("oa", kernel.Route{Family: 6, Via: netip.MustParseAddr("fd09:5::2")})
	l.route("oa", kernel.Route{Dst: netip.MustParsePrefix("10.20.0.0/16"), Family: 4, Via: netip.MustParseAddr("10.9.5.2"), Metric: 7})
	l.route("oa", kernel.Route{Dst: netip.MustParsePrefix("10.30.0.3/32"), Family: 4, Dev: "va"})
	wantReplies(t, ping(t, l, "oa", "10.9.5.2", 1, time.Second), 1)
	wantReplies(t, ping(t, l, "oa", "fd09:5::2", 1, 3*time.Second), 1) // patient: neighbour discovery under load
	// Only for the address nobody has: one probe of 100 ms, not three of
	// a second (the positive pings above keep the kernel's patience).
	l.fastNeigh("oa", "va")
	ping(t, l, "oa", "10.9.5.9", 1, 3*time.Second)

	// links
	links, err := l.k.Links("oa")
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, x := range links {
		if x.Index != 0 {
			t.Errorf("link %s carries its ifindex", x.Name)
		}
		got = append(got, fmt.Sprintf("%s %s %s %d %v %s", x.Name, x.Kind, x.MAC, x.MTU, x.Up, or(x.Master, "-")))
	}
	var ipLinks []struct {
		Name, Address, Master, Link_type string
		Ifname                           string
		Mtu                              int
		Flags                            []string
		Linkinfo                         struct{ Info_kind string }
	}
	ipj(t, "oa", &ipLinks, "-d", "link", "show")
	for _, x := range ipLinks {
		kind := x.Linkinfo.Info_kind
		if x.Link_type == "loopback" {
			kind = "loopback"
		}
		want = append(want, fmt.Sprintf("%s %s %s %d %v %s", x.Ifname, kind, x.Address, x.Mtu, slices.Contains(x.Flags, "UP"), or(x.Master, "-")))
	}
	sameLines(t, "links", got, want)

	// addresses
	addrs, err := l.k.Addrs("oa")
	if err != nil {
		t.Fatal(err)
	}
	got, want = nil, nil
	for _, a := range addrs {
		got = append(got, fmt.Sprintf("%s %s %s", a.Dev, a.Prefix, a.Scope))
	}
	var ipAddrs []struct {
		Ifname    string
		Addr_info []struct {
			Local     string
			Prefixlen int
			Scope     string
		}
	}
	ipj(t, "oa", &ipAddrs, "addr", "show")
	for _, x := range ipAddrs {
		for _, a := range x.Addr_info {
			want = append(want, fmt.Sprintf("%s %s/%d %s", x.Ifname, a.Local, a.Prefixlen, a.Scope))
		}
	}
	// Sorted by device, family, address, not as text: compare as sets,
	// then check the order directly.
	sameSet(t, "addrs", got, want)
	if !slices.IsSortedFunc(addrs, func(a, b kernel.Addr) int {
		return strings.Compare(a.Dev, b.Dev)*4 + a.Prefix.Addr().Compare(b.Prefix.Addr())
	}) {
		t.Errorf("addrs are not sorted: %v", addrs)
	}

	// routes
	routes, err := l.k.Routes("oa")
	if err != nil {
		t.Fatal(err)
	}
	got, want = nil, nil
	for _, r := range routes {
		dst := "default"
		if r.Dst.IsValid() {
			dst = r.Dst.String()
		}
		via := "-"
		if r.Via.IsValid() {
			via = r.Via.String()
		}
		got = append(got, fmt.Sprintf("%d %s %s %s %s %d %s", r.Family, dst, via, or(r.Dev, "-"), r.Proto, r.Metric, r.Type))
	}
	for _, fam := range []string{"-4", "-6"} {
		var ipRoutes []struct {
			Type, Dst, Gateway, Dev, Protocol string
			Metric                            int
		}
		ipj(t, "oa", &ipRoutes, fam, "route", "show")
		for _, r := range ipRoutes {
			if r.Dst != "default" && !strings.Contains(r.Dst, "/") {
				r.Dst += map[string]string{"-4": "/32", "-6": "/128"}[fam]
			}
			proto := map[string]string{"78": "nsrun"}[r.Protocol]
			want = append(want, fmt.Sprintf("%s %s %s %s %s %d %s", fam[1:], r.Dst, or(r.Gateway, "-"), or(r.Dev, "-"), or(proto, r.Protocol), r.Metric, or(r.Type, "unicast")))
		}
	}
	sameSet(t, "routes", got, want)

	// neighbours
	neighs, err := l.k.Neighbors("oa")
	if err != nil {
		t.Fatal(err)
	}
	got, want = nil, nil
	for _, n := range neighs {
		got = append(got, fmt.Sprintf("%s %s %s %s", n.Dev, n.IP, or(n.MAC, "-"), n.State))
	}
	var ipNeighs []struct {
		Dst, Dev, Lladdr string
		State            []string
	}
	ipj(t, "oa", &ipNeighs, "neigh", "show")
	for _, n := range ipNeighs {
		want = append(want, fmt.Sprintf("%s %s %s %s", n.Dev, n.Dst, or(n.Lladdr, "-"), strings.Join(n.State, ",")))
	}
	sameSet(t, "neighbors", got, want)
	for _, w := range []string{"va 10.9.5.2", "va fd09:5::2", "va 10.9.5.9 - FAILED"} {
		if !strings.Contains(strings.Join(got, "\n"), w) {
			t.Errorf("neighbors: no %q in\n%s", w, strings.Join(got, "\n"))
		}
	}
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s:\n%s\nip shows:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A dump the kernel interrupts because the table changed is read again,
// never returned partial: addresses that stay are always listed while
// others come and go on the same link.
func TestObserverDumpWhileChanging(t *testing.T) {
	l := newLab(t)
	l.netns("oc", true)
	l.veth("oc", "v0", "oc", "v1")
	const stable = 400
	for i := range stable {
		l.addr("oc", "v0", fmt.Sprintf("10.%d.%d.1/32", 100+i/250, i%250))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		k := kernel.NewNetlink(nstest.NetnsDir) // a handle of its own
		defer k.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := netip.MustParsePrefix(fmt.Sprintf("10.200.0.%d/32", i%200+1))
			if err := k.AddrAdd("oc", "v0", p); err != nil {
				t.Error(err)
				return
			}
			if err := k.AddrDel("oc", "v0", p); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)
	for range 100 {
		addrs, err := l.k.Addrs("oc")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, a := range addrs {
			if a.Dev == "v0" && a.Prefix.Addr().Is4() && a.Prefix.Addr().As4()[1] >= 100 && a.Prefix.Addr().As4()[1] < 200 {
				n++
			}
		}
		if n != stable {
			t.Fatalf("Addrs listed %d of the %d stable addresses", n, stable)
		}
	}
}
