package builtins_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// sockets counts the process's open sockets: a capture left open would
// also keep its namespace alive after `ip netns del`.
func sockets(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// The observations the walkthrough recipes reproduce, asserted from the
// recipe itself, then checked against iproute2 and the pcap file.
const observeRecipe = `
ns1 = netns("ns1", lo=False)
ns2 = netns("ns2")
a, b = veth("v1", "v2", netns=ns1, peer_netns=ns2)
ns1.sysctl("net.ipv4.neigh.v1.retrans_time_ms", 100)  # ARP gives up quickly
ns1.sysctl("net.ipv4.neigh.v1.mcast_solicit", 1)
a.addr("172.16.2.2/32").up()
b.addr("172.16.2.3/32").up()

# Its own address is unreachable while lo is down.
r = ping(ns1, "172.16.2.2", count=2, timeout="300ms")
if r.ok or r.sent != 2 or r.received != 0 or r.error != "":
    fail("own address, lo down:", r)
ns1.link("lo").up()
reach(ns1, "172.16.2.2", count=2)

# A /32 peer without a route: the kernel refuses to send.
r = ping(ns1, "172.16.2.3")
if r.ok or r.sent != 0 or r.error != "network is unreachable":
    fail("no route:", r)
unreachable(ns1, "172.16.2.3")

ns1.route("172.16.2.3/32", dev=a)
ns2.route("172.16.2.2/32", dev=b)
c = capture(ns1, a, filter="icmp and host 172.16.2.3", pcap=PCAP)
r = reach(ns1, "172.16.2.3", count=3, interval="10ms")
if r.sent != 3 or r.received != 3 or len(r.rtt_ms) != 3 or type(r.rtt_ms[0]) != "float" or r.error != "":
    fail("with routes:", r)
n = c.stop()
if list(n.keys()) != ["total", "arp", "ip", "ip6", "icmp", "icmp6", "tcp", "udp", "other", "dropped"]:
    fail("keys:", n)
if n["total"] != 6 or n["icmp"] != 6 or n["ip"] != 6 or n["arp"] != 0:
    fail("counts:", n)

# ARP gets no answer: "destination host unreachable", from our own address.
ns1.route("172.16.2.0/24", dev=a)
r = ping(ns1, "172.16.2.9", count=2, timeout="3s")
if r.ok or r.sent != 2 or r.error != "destination host unreachable" or r.error_from != "172.16.2.2":
    fail("host unreachable:", r)

print(pingall([ns1, ns2, host()]))
for nb in ns1.neighbors():
    print(nb.ip, nb.mac == b.mac, nb.dev, nb.state)
for rt in ns1.routes():
    print(rt.dst, rt.via, rt.dev, rt.proto, rt.metric, rt.family, rt.type)
for l in ns1.links():
    print(l.name, l.kind, l.mac == a.mac, l.mtu, l.up, l.master, l.addrs[:1])
print(ns1.addrs(scope="global"), ns2.addrs(scope="host"))
print(ns1.addrs(dev="lo", scope="host"), [(x.cidr, x.dev, x.scope, x.family) for x in ns1.addrs(full=True, scope="global")])
c2 = capture(ns2, "v2")  # never stopped: closed by the rollback
reach(ns1, "172.16.2.9", timeout="3s")
`

func TestObserveRecipe(t *testing.T) {
	nstest.Kernel(t)
	open := sockets(t)
	pcap := filepath.Join(t.TempDir(), "v1.pcap")
	k := kernel.NewNetlink(nstest.NetnsDir)
	src := fmt.Sprintf("PCAP = %q\n%s", pcap, observeRecipe)
	out, rt, err := runSrc(t, k, "observe.star", src)

	// The last line fails as the recipe writer will see it.
	want := `reach: no reply from 172.16.2.9 in netns "ns1" (3 sent, 0 received: destination host unreachable (from 172.16.2.2))`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error:\n%v\nwant:\n%s", engine.Backtrace(err), want)
	}
	// ip sees the same neighbours.
	if got := nstest.Ip(t, "ns1", "neigh"); !strings.Contains(got, "172.16.2.3 dev v1 lladdr") || !strings.Contains(got, "172.16.2.9 dev v1 FAILED") {
		t.Errorf("ip neigh in ns1:\n%s", got)
	}
	rollback(t, rt)
	k.Close()
	if n := sockets(t); n != open {
		t.Errorf("%d sockets open after the rollback, %d before the run", n, open)
	}

	wantOut := `{"ns1": {"ns2": True, "host": False}, "ns2": {"ns1": True, "host": False}, "host": {"ns1": False, "ns2": False}}
172.16.2.3 True v1 REACHABLE
172.16.2.9 False v1 FAILED
172.16.2.0/24 None v1 nsrun 0 4 unicast
172.16.2.3/32 None v1 nsrun 0 4 unicast
fe80::/64 None v1 kernel 256 6 unicast
lo loopback False 65536 True None ["127.0.0.1/8"]
v1 veth True 1500 True None ["172.16.2.2/32"]
["172.16.2.2/32"] ["127.0.0.1/8", "::1/128"]
["127.0.0.1/8", "::1/128"] [("172.16.2.2/32", "v1", "global", 4)]
`
	if out != wantOut {
		t.Errorf("output:\n%s\nwant:\n%s", out, wantOut)
	}

	b, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	// 24-byte header, then 6 ICMP records of 16 + 98 bytes (14 Ethernet,
	// 20 IP, 8 ICMP, 56 payload).
	if len(b) != 24+6*(16+98) || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Errorf("pcap file: %d bytes, header % x", len(b), b[:min(len(b), 24)])
	}
}

// Planned on the recording kernel, nothing is sent: pings are "not run"
// and pass, captures count nothing, and the observation methods read the
// model.
func TestObservePlan(t *testing.T) {
	src := `
ns1 = netns("ns1")
a, b = veth("v1", "v2", netns=ns1)
a.addr("10.0.0.1/24", "fd00::1/64").up()
r = reach(ns1, "10.0.0.2")
print(r.sent, r.received, r.ok, r.error, r.rtt_ms, r.error_from, r.dst, r.netns)
unreachable(ns1, "10.0.0.2")
c = capture(ns1, a, filter="arp", pcap="never.pcap")
print(c, c.stop())
print(pingall([ns1, host()]))
print([(l.name, l.kind, l.up, l.addrs) for l in ns1.links()])
print(ns1.addrs(), ns1.routes(), ns1.neighbors())
`
	out, _, err := runSrc(t, kernel.NewRecorder(), "plan.star", src)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	want := `3 3 True  [0.1, 0.1, 0.1] None 10.0.0.2 netns("ns1")
capture(netns("ns1"), "v1", filter="arp", pcap="never.pcap") {"total": 0, "arp": 0, "ip": 0, "ip6": 0, "icmp": 0, "icmp6": 0, "tcp": 0, "udp": 0, "other": 0, "dropped": 0}
{"ns1": {"host": False}, "host": {"ns1": True}}
[("lo", "loopback", True, []), ("v1", "veth", True, ["10.0.0.1/24", "fd00::1/64"]), ("v2", "veth", False, [])]
["10.0.0.1/24", "fd00::1/64"] [route_info(dev = "v1", dst = "10.0.0.0/24", family = 4, metric = 0, proto = "kernel", src = "10.0.0.1", table = 254, type = "unicast", via = None), route_info(dev = "v1", dst = "fd00::/64", family = 6, metric = 256, proto = "kernel", src = None, table = 254, type = "unicast", via = None)] []
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if _, err := os.Stat("never.pcap"); err == nil {
		t.Errorf("a planned capture wrote its pcap file")
	}
}

func TestObserveValidation(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`ping(host(), "10.0.0.300")`, `ping: for parameter dst: "10.0.0.300" is not an IP address`},
		{`ping(host(), "10.0.0.1", count=0)`, `ping: for parameter count: 0 is out of range`},
		{`reach(host(), "10.0.0.1", timeout="-1s")`, `"-1s" is not a positive duration`},
		{`unreachable("ns1", "10.0.0.1")`, `unreachable: for parameter netns: got string, want netns`},
		{`pingall([host(), "x"])`, `pingall: for parameter namespaces: got string, want netns`},
		{`pingall([host(), host()])`, `pingall: netns "host" is listed twice`},
		{`capture(host(), "lo", filter="icmp or arp")`, `capture: for parameter filter: filter "icmp or arp": want "and" before "or"`},
		{`capture(host(), "averyveryverylongname")`, `capture: for parameter dev: "averyveryverylongname" is longer than 15 bytes`},
		{`n = netns("n"); a, b = veth("a", "b", peer_netns=n); capture(host(), b)`, `capture: link "b" is in netns "n", not "host"`},
		{`capture(host(), "lo", pcap="")`, `capture: for parameter pcap: want a file name or None`},
		{`host().addrs(scope="universe")`, `addrs: for parameter scope: "universe" is not a scope`},
		{`host().routes(1)`, `routes: got 1 arguments, want at most 0`},
	} {
		_, _, err := runSrc(t, kernel.NewRecorder(), "v.star", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.src, err, c.want)
		}
	}
}
