package dhcp

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

var testCfg = Config{
	Link:   "br0",
	Start:  netip.MustParseAddr("10.0.0.1"),
	End:    netip.MustParseAddr("10.0.0.4"),
	Router: netip.MustParseAddr("10.0.0.1"),
	DNS:    []netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("192.0.2.53")},
	Lease:  time.Hour,
}

func TestArgs(t *testing.T) {
	cfg := testCfg
	cfg.Subnet = netip.MustParsePrefix("10.0.0.0/24")
	got, ready, err := parseArgs(append(cfg.Args(), "-ready", "/x"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg) || ready != "/x" {
		t.Errorf("parseArgs(Args()) = %+v, %q; want %+v", got, ready, cfg)
	}
	for _, bad := range [][]string{
		{"-link", "x", "-range", "10.0.0.9-10.0.0.1"},
		{"-link", "x", "-range", "10.0.0.1"},
		{"-link", "x", "-range", "fd00::1-fd00::2"},
		{"-link", "x", "-range", "10.0.0.1-10.0.0.2", "-subnet", "10.1.0.0/16"},
		{"-link", "x", "-range", "10.0.0.1-10.0.0.2", "-lease", "10ms"},
	} {
		if _, _, err := parseArgs(bad); err == nil {
			t.Errorf("parseArgs(%q) accepted it", bad)
		}
	}
}

func request(t *testing.T, mac string, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(typ)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Addresses go out in order, one per MAC, for good; the router's and the
// server's own are skipped.
func TestReply(t *testing.T) {
	s, err := NewServer(testCfg, netip.MustParseAddr("10.0.0.2"), netip.MustParsePrefix("10.0.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	offer := func(mac string) string {
		t.Helper()
		r, err := s.Reply(request(t, mac, dhcpv4.MessageTypeDiscover))
		if err != nil {
			return err.Error()
		}
		if r.MessageType() != dhcpv4.MessageTypeOffer {
			t.Fatalf("answer to a discover: %s", r.MessageType())
		}
		return r.YourIPAddr.String()
	}
	for _, tt := range []struct{ mac, want string }{
		{"02:00:00:00:00:01", "10.0.0.3"},
		{"02:00:00:00:00:02", "10.0.0.4"},
		{"02:00:00:00:00:01", "10.0.0.3"},
		{"02:00:00:00:00:03", "the pool 10.0.0.1-10.0.0.4 is exhausted"},
	} {
		if got := offer(tt.mac); got != tt.want {
			t.Errorf("offer to %s = %s, want %s", tt.mac, got, tt.want)
		}
	}

	sid := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.2")))
	ack, _ := s.Reply(request(t, "02:00:00:00:00:01", dhcpv4.MessageTypeRequest, sid,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.3")))))
	l, err := leaseOf(ack)
	if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("request: %v %v", ack, err)
	}
	want := Lease{Addr: netip.MustParsePrefix("10.0.0.3/24"), Router: testCfg.Router, DNS: testCfg.DNS, Server: netip.MustParseAddr("10.0.0.2"), Time: time.Hour}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("lease = %+v, want %+v", l, want)
	}

	nak, _ := s.Reply(request(t, "02:00:00:00:00:01", dhcpv4.MessageTypeRequest, sid,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.4")))))
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("a request for another client's address got %v, want a NAK", nak)
	}
	other, _ := s.Reply(request(t, "02:00:00:00:00:01", dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.9"))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.3")))))
	if other != nil {
		t.Errorf("a request for another server was answered: %v", other)
	}
}

// lab builds, on the real kernel, a qdhcp namespace whose bridge br0
// (10.0.0.2/24) joins vm1 and vm2; vm3 reaches qdhcp on a link outside the
// bridge. Everything is journaled in rt, so rolling rt back removes it.
func lab(t *testing.T) (*kernel.Netlink, *engine.Runtime) {
	t.Helper()
	k := kernel.NewNetlink(nstest.NetnsDir)
	j, _ := journal.Open("")
	rt := engine.New("t", k, j)
	t.Cleanup(func() {
		if _, failed := rt.Rollback(0); len(failed) > 0 {
			t.Errorf("rollback: %v", failed)
		}
		k.Close()
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"qdhcp", "vm1", "vm2", "vm3"} {
		id, err := k.NetnsAdd(kernel.NetnsSpec{Name: ns, Tag: "nsrun:t"})
		must(err)
		must(rt.Change(nil, journal.Step{Op: journal.OpNetns, Name: ns, Ino: id.Ino, Alias: "nsrun:t"}, func(kernel.Kernel, *journal.Step) error { return nil }))
	}
	must(k.LinkAdd(kernel.LinkSpec{NS: "qdhcp", Name: "br0", Kind: "bridge"}))
	must(k.AddrAdd("qdhcp", "br0", netip.MustParsePrefix("10.0.0.2/24")))
	must(k.LinkSetUp("qdhcp", "br0", true))
	for i, vm := range []string{"vm1", "vm2", "vm3"} {
		port := "p" + vm[2:]
		mac := net.HardwareAddr{2, 0, 0, 0, 0, byte(i + 1)}
		must(k.LinkAdd(kernel.LinkSpec{NS: "qdhcp", Name: port, Kind: "veth", PeerNS: vm, PeerName: "eth0", PeerMAC: mac}))
		if vm != "vm3" {
			must(k.LinkSetMaster("qdhcp", port, "br0"))
		}
		must(k.LinkSetUp("qdhcp", port, true))
		must(k.LinkSetUp(vm, "eth0", true))
	}
	return k, rt
}

func start(t *testing.T, rt *engine.Runtime, cfg Config) (Ready, error) {
	return Start(context.Background(), cfg, "", func(argv []string) (int, error) {
		sp, err := rt.Spawn(nil, "qdhcp", argv, engine.SpawnOptions{Name: "dhcp_server"})
		return sp.Pid, err
	})
}

// The server is ready when Start returns; clients get addresses in the order
// they ask, the same one again on asking again, and a client on another link
// gets nothing. Rolling back stops the server (nstest checks no child is
// left).
func TestServerAndClient(t *testing.T) {
	nstest.Kernel(t)
	k, rt := lab(t)
	cfg := testCfg
	cfg.Start = netip.MustParseAddr("10.0.0.100")
	cfg.End = netip.MustParseAddr("10.0.0.200")
	r, err := start(t, rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Pid == 0 || r.Addr != netip.MustParseAddr("10.0.0.2") || r.Subnet != netip.MustParsePrefix("10.0.0.0/24") {
		t.Errorf("ready = %+v", r)
	}
	for _, tt := range []struct{ vm, want string }{
		{"vm2", "10.0.0.100/24"},
		{"vm1", "10.0.0.101/24"},
		{"vm2", "10.0.0.100/24"},
	} {
		l, err := Obtain(context.Background(), k.Path(tt.vm), "eth0", 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tt.vm, err)
		}
		if l.Addr.String() != tt.want || l.Router != cfg.Router || l.Server != r.Addr || l.Time != time.Hour {
			t.Errorf("%s got %+v, want %s from %s", tt.vm, l, tt.want, r.Addr)
		}
	}
	// Bound to br0, the server does not hear vm3, whose link is outside it.
	if l, err := Obtain(context.Background(), k.Path("vm3"), "eth0", time.Second); err == nil {
		t.Errorf("vm3, outside the server's link, got %+v", l)
	}
}

// A server that cannot start says why, and Start returns only then.
func TestServerStartError(t *testing.T) {
	nstest.Kernel(t)
	_, rt := lab(t)
	cfg := testCfg
	cfg.Start = netip.MustParseAddr("10.9.0.100")
	cfg.End = netip.MustParseAddr("10.9.0.200")
	cfg.Router = netip.Addr{}
	_, err := start(t, rt, cfg)
	if err == nil || !strings.Contains(err.Error(), `link "br0" has no IPv4 address whose subnet holds the range 10.9.0.100-10.9.0.200`) {
		t.Errorf("err = %v", err)
	}
	cfg.Link = "nosuch"
	if _, err := start(t, rt, cfg); err == nil || !strings.Contains(err.Error(), `link "nosuch"`) {
		t.Errorf("err = %v", err)
	}
}

// Serve returns nil once its socket is closed: the daemon's clean shutdown
// (on SIGTERM) exits 0.
func TestServeEndsCleanly(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	conn.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
}
