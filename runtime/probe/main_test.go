package probe_test

import (
	"net/netip"
	"testing"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// lab builds test topologies directly on the kernel and removes them when
// the test ends (deleting a namespace deletes its links).
type lab struct {
	t *testing.T
	k *kernel.Netlink
}

func newLab(t *testing.T) *lab {
	t.Helper()
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	t.Cleanup(func() { k.Close() })
	return &lab{t: t, k: k}
}

// netns creates a namespace, with IPv6 duplicate address detection off (so
// that an address is usable at once) and, if lo, its loopback up.
func (l *lab) netns(name string, lo bool) {
	l.t.Helper()
	id, err := l.k.NetnsAdd(kernel.NetnsSpec{Name: name, Tag: "nsrun:t"})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if err := l.k.NetnsDel(name, "nsrun:t", id); err != nil {
			l.t.Error(err)
		}
	})
	l.sysctl(name, "net.ipv6.conf.default.accept_dad", "0")
	l.sysctl(name, "net.ipv6.conf.all.accept_dad", "0")
	if lo {
		l.up(name, "lo")
	}
}

func (l *lab) sysctl(ns, key, value string) {
	l.t.Helper()
	if err := l.k.SysctlSet(ns, key, value); err != nil {
		l.t.Fatal(err)
	}
}

// veth creates a veth a@nsA -- b@nsB, both ends up.
func (l *lab) veth(nsA, a, nsB, b string) {
	l.t.Helper()
	if err := l.k.LinkAdd(kernel.LinkSpec{NS: nsA, Name: a, Kind: "veth", PeerNS: nsB, PeerName: b}); err != nil {
		l.t.Fatal(err)
	}
	l.up(nsA, a)
	l.up(nsB, b)
}

func (l *lab) up(ns, dev string) {
	l.t.Helper()
	if err := l.k.LinkSetUp(ns, dev, true); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lab) addr(ns, dev, cidr string) {
	l.t.Helper()
	if err := l.k.AddrAdd(ns, dev, netip.MustParsePrefix(cidr)); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lab) route(ns string, r kernel.Route) {
	l.t.Helper()
	if err := l.k.RouteAdd(ns, r); err != nil {
		l.t.Fatal(err)
	}
}

// fastNeigh makes address resolution on dev give up after one probe of
// 100 ms, instead of three of a second: "host unreachable" comes quickly.
func (l *lab) fastNeigh(ns, dev string) {
	l.t.Helper()
	for _, fam := range []string{"ipv4", "ipv6"} {
		l.sysctl(ns, "net."+fam+".neigh."+dev+".retrans_time_ms", "100")
		l.sysctl(ns, "net."+fam+".neigh."+dev+".mcast_solicit", "1")
	}
}
