package builtins_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/proc"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type ipLink struct {
	Name    string `json:"ifname"`
	Address string `json:"address"`
	Master  string `json:"master"`
	Alias   string `json:"ifalias"`
	Flags   []string
	Addrs   []struct {
		Local     string `json:"local"`
		Prefix    int    `json:"prefixlen"`
		Broadcast string `json:"broadcast"`
	} `json:"addr_info"`
}

func ipJSON(t *testing.T, ns string, args ...string) []ipLink {
	t.Helper()
	var links []ipLink
	if err := json.Unmarshal([]byte(nstest.Ip(t, ns, append([]string{"-j"}, args...)...)), &links); err != nil {
		t.Fatal(err)
	}
	return links
}

// onKernel runs src as recipe name on the real kernel, fails t if it fails,
// and rolls the lab back when t ends. It returns what the recipe printed
// and the kernel.
func onKernel(t *testing.T, name, src string) (string, *kernel.Netlink) {
	t.Helper()
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	t.Cleanup(func() { k.Close() })
	out, rt, err := runSrc(t, k, name, src)
	t.Cleanup(func() { rollback(t, rt) })
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	return out, k
}

// The recipe's topology is in the kernel exactly as it says, seen through
// iproute2; the rollback removes all of it (nstest checks).
func TestTopologyAsIpSeesIt(t *testing.T) {
	out, _ := onKernel(t, "blue.star", readTestdata(t, "blue.star"))
	macs := strings.Fields(out)

	if got := nstest.Ip(t, "", "netns", "list"); !strings.Contains(got, "blue") {
		t.Errorf("ip netns list = %q, want blue", got)
	}
	veth1 := ipJSON(t, "blue", "addr", "show", "veth1")
	if len(veth1) != 1 || veth1[0].Address != macs[1] {
		t.Fatalf("veth1 in blue = %+v, want MAC %s", veth1, macs[1])
	}
	// The host's end carries the lab's tag; the peer, born in the lab's
	// namespace (whose lo is tagged), is known by its MAC.
	if l := ipJSON(t, "", "link", "show", "veth0"); l[0].Alias != "nsrun:t" {
		t.Errorf("veth0 carries tag %q, want nsrun:t", l[0].Alias)
	}
	if l := ipJSON(t, "blue", "link", "show", "veth1"); l[0].Alias != "" {
		t.Errorf("veth1 carries tag %q, want none", l[0].Alias)
	}
	if l := ipJSON(t, "blue", "link", "show", "lo"); l[0].Alias != "nsrun:t" {
		t.Errorf("blue's lo carries tag %q, want nsrun:t", l[0].Alias)
	}
	var addrs []string
	for _, a := range veth1[0].Addrs {
		addrs = append(addrs, a.Local)
	}
	if got := strings.Join(addrs, " "); !strings.Contains(got, "192.168.10.21") || !strings.Contains(got, "fd00:10::21") {
		t.Errorf("veth1 addresses = %s", got)
	}
	veth0 := ipJSON(t, "", "link", "show", "veth0")
	if veth0[0].Master != "br0" || veth0[0].Address != macs[0] {
		t.Errorf("veth0 = %+v, want master br0 and MAC %s", veth0[0], macs[0])
	}
	if got := nstest.Ip(t, "blue", "route"); !strings.Contains(got, "default via 192.168.10.1 dev veth1") || !strings.Contains(got, "10.99.0.0/16 dev veth1 proto 78 scope link metric 50") {
		t.Errorf("routes in blue:\n%s", got)
	}
	if got := nstest.Ip(t, "blue", "link", "show", "lo"); !strings.Contains(got, "UP") {
		t.Errorf("lo in blue is not up: %s", got)
	}
}

// A failure at any change rolls back everything made before it, in a
// pipelined run (where the recipe runs ahead of the kernel) as in one whose
// changes are made one by one.
func TestRollbackAtEveryChange(t *testing.T) {
	nstest.Kernel(t)
	src := readTestdata(t, "blue.star")
	_, count, err := runSrc(t, kernel.NewRecorder(), "blue.star", src)
	if err != nil {
		t.Fatal(err)
	}
	n := count.Journal.Len()
	if n < 10 {
		t.Fatalf("only %d changes counted", n)
	}
	for _, piped := range []bool{false, true} {
		for k := 1; k <= n; k++ {
			before := nstest.Snapshot(t)
			nl := kernel.NewNetlink(nstest.NetnsDir)
			_, rt, err := runFaulty(t, nl, fault.FailAt(k), "blue.star", src, piped)
			if !errors.Is(err, fault.ErrInjected) {
				t.Fatalf("change %d (pipelined %v): err = %v, want the injected failure", k, piped, err)
			}
			rollback(t, rt)
			nl.Close()
			if after := nstest.Snapshot(t); after != before {
				t.Fatalf("failure at change %d (pipelined %v) left:\n%s\nwant:\n%s", k, piped, after, before)
			}
		}
	}
}

// An object that exists before the run is named in the error and left
// exactly as it was.
func TestCollisionLeavesForeignLinkAlone(t *testing.T) {
	nstest.Kernel(t)
	for _, args := range [][]string{
		{"link", "add", "br0", "type", "bridge"},
		{"link", "set", "br0", "alias", "someone-else"},
	} {
		nstest.Ip(t, "", args...)
	}
	defer nstest.Ip(t, "", "link", "del", "br0")
	before := nstest.Ip(t, "", "-d", "-j", "link", "show", "br0")
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	_, rt, err := runSrc(t, k, "blue.star", readTestdata(t, "blue.star"))
	rollback(t, rt)
	if err == nil || !strings.Contains(err.Error(), `a link named "br0" already exists in netns "host"`) {
		t.Fatalf("err = %v, want the collision named", err)
	}
	if after := nstest.Ip(t, "", "-d", "-j", "link", "show", "br0"); after != before {
		t.Errorf("br0 changed:\n%s\n%s", before, after)
	}
}

// exec_in gives a command what `ip netns exec` gives it.
func TestExecIn(t *testing.T) {
	out, k := onKernel(t, "e.star", `
n = netns("red")
a, b = veth("va", "vb", peer_netns = n)
print(exec_in(n, "ls /sys/class/net").stdout.split())
r = exec_in(n, ["sh", "-c", "echo out; echo err >&2; exit 3"], check = False)
print(r.rc, r.stdout.strip(), r.stderr.strip())
print(exec_in(n, "cat", stdin = "fed").stdout)
`)
	want := "[\"lo\", \"vb\"]\n3 out err\nfed\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}

	_, rt2, err := runSrc(t, k, "f.star", `exec_in(host(), "echo oops >&2; exit 4")`)
	rollback(t, rt2)
	if err == nil || !strings.Contains(err.Error(), `exited with status 4: oops`) {
		t.Errorf("err = %v", err)
	}
	_, rt3, err := runSrc(t, k, "g.star", `exec_in(host(), ["sleep", "30"], timeout = "100ms")`)
	rollback(t, rt3)
	if err == nil || !strings.Contains(err.Error(), "timed out after 100ms") {
		t.Errorf("err = %v", err)
	}
}

// exec_in returns when the shell does: a background child it leaves goes on,
// as a process of the lab (stopped on rollback), and does not hold it open.
func TestExecInBackgroundChild(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	out, rt, err := runSrc(t, k, "bg.star", `
n = netns("bgc")
r = exec_in(n, "sleep 301 & echo started", timeout = "20s", check = False)
print(r.timed_out, r.rc, r.stdout.strip())
print(exec_in(n, "pgrep -x sleep >/dev/null && echo alive").stdout.strip())
`)
	rollback(t, rt)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	if out != "False 0 started\nalive\n" {
		t.Errorf("output:\n%s", out)
	}
}

// A background process is stopped, with what it started, on rollback.
func TestSpawnStopped(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	out, rt, err := runSrc(t, k, "s.star", `
n = netns("bg")
p = spawn_in(n, "sleep 300 & sleep 301")
print(p.pid)
`)
	if err != nil {
		rollback(t, rt)
		t.Fatal(engine.Backtrace(err))
	}
	var pid int
	if _, err := fmtSscan(out, &pid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-pid, 0); err != nil {
		t.Fatalf("process group %d is not running: %v", pid, err)
	}
	rollback(t, rt)
	// Its members may linger as zombies a moment (orphans wait for init
	// to reap them): none is alive.
	if proc.GroupLive(pid) {
		t.Errorf("process group %d still has a live member after rollback", pid)
	}
}

// A link created in the host and moved, as the walkthroughs do, goes back
// and away.
func TestMove(t *testing.T) {
	onKernel(t, "mv.star", `
n = netns("netns01")
h, c = veth("veth0-host", "veth0-ct")
c.move(n)
c.addr("10.10.10.11/24").up()
h.addr("10.10.10.10/24").up()
`)
	if got := nstest.Ip(t, "netns01", "-br", "addr", "show", "veth0-ct"); !strings.Contains(got, "10.10.10.11/24") {
		t.Errorf("veth0-ct in netns01: %q", got)
	}
}

// netns(ipv6=False) turns IPv6 off before the namespace has links: neither
// lo nor a veth end made in it has an IPv6 address, and IPv4 works as ever.
func TestNetnsWithoutIPv6(t *testing.T) {
	_, k := onKernel(t, "v4.star", `
n = netns("v4only", ipv6 = False)
m = netns("dual")
a, b = veth("a", "b", peer_netns = n)
a.move(m)
a.addr("10.1.0.1/24").up()
b.addr("10.1.0.2/24").up()
if not ping(m, "10.1.0.2").ok:
    fail("no IPv4 across")
`)
	for _, dev := range []string{"lo", "b"} {
		if got := nstest.Ip(t, "v4only", "-6", "addr", "show", "dev", dev); strings.TrimSpace(got) != "" {
			t.Errorf("%s in v4only has IPv6 addresses:\n%s", dev, got)
		}
	}
	if got := nstest.Ip(t, "dual", "-6", "addr", "show", "dev", "lo"); !strings.Contains(got, "::1/128") {
		t.Errorf("lo of a namespace with IPv6 has no ::1:\n%s", got)
	}
	// What planning cannot foresee (after a look at the network) the
	// kernel refuses; the error says why.
	err := k.AddrAdd("v4only", "b", netip.MustParsePrefix("fd00::2/64"))
	if err == nil || !strings.Contains(err.Error(), `IPv6 is off on "b" in netns "v4only"`) {
		t.Errorf("an IPv6 address where IPv6 is off: %v", err)
	}
}

// An IPv4 address gets its broadcast address as the library (and
// `ip addr add ... brd +`) gives it: a /30 does, a /31 (RFC 3021) not.
func TestAddrBroadcast(t *testing.T) {
	onKernel(t, "brd.star", `
n = netns("brd")
a, b = veth("a", "b", netns = n, peer_netns = n)
a.addr("10.9.0.1/30")
b.addr("10.9.1.0/31")
`)
	brd := map[string]string{}
	for _, l := range ipJSON(t, "brd", "-4", "addr", "show") {
		for _, a := range l.Addrs {
			brd[a.Local] = a.Broadcast
		}
	}
	if brd["10.9.0.1"] != "10.9.0.3" || brd["10.9.1.0"] != "" {
		t.Errorf("broadcast addresses %v, want 10.9.0.1 -> 10.9.0.3 and none for the /31", brd)
	}
}

// The lab's links in the host are in the lab's device group, and teardown
// deletes the group in one request; but a foreign link someone put in the
// group stops that: it is left alone, and the lab's links go one by one.
func TestGroupTeardownSparesForeign(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	src := `s = netns("gsw")
veth("gv0", "p0", peer_netns = s)
veth("gv1", "p1", peer_netns = s)
`
	_, rt, err := runSrc(t, k, "group.star", src)
	if err != nil {
		rollback(t, rt)
		t.Fatal(engine.Backtrace(err))
	}
	group := fmt.Sprint(kernel.GroupOf(rt.Tag()))
	for _, name := range []string{"gv0", "gv1"} {
		if got := ipGroup(t, name); got != group {
			t.Errorf("%s is in group %q, want the lab's %s", name, got, group)
		}
	}
	nstest.Ip(t, "", "link", "add", "name", "fgn0", "type", "veth", "peer", "name", "fgn1")
	defer nstest.Ip(t, "", "link", "del", "fgn0")
	nstest.Ip(t, "", "link", "set", "dev", "fgn0", "group", group)

	rollback(t, rt)
	if got := ipGroup(t, "fgn0"); got != group {
		t.Errorf("the foreign link in the lab's group: %q after the teardown", got)
	}
	if out := nstest.Ip(t, "", "-br", "link"); strings.Contains(out, "gv0") || strings.Contains(out, "gv1") {
		t.Errorf("the lab's links are left:\n%s", out)
	}
}

// ipGroup is the device group of a host link as ip -d -j shows it.
func ipGroup(t *testing.T, name string) string {
	t.Helper()
	var links []struct {
		Group string `json:"group"`
	}
	if err := json.Unmarshal([]byte(nstest.Ip(t, "", "-d", "-j", "link", "show", name)), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip link show %s: %v", name, err)
	}
	return links[0].Group
}

// openFDs counts this process's descriptors of namespaces and netlink
// sockets.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && (strings.HasPrefix(target, "net:[") || strings.HasPrefix(target, "socket:[")) {
			n++
		}
	}
	return n
}

// What the kernel keeps open does not grow with the lab: with room for 8
// namespaces, a lab of 40 is built, used again from its first namespace
// (opened anew) and rolled back whole, with no more than that open.
func TestDescriptorsBounded(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	k.OpenNetns = 8
	defer k.Close()
	before := openFDs(t)
	out, rt, err := runSrc(t, k, "many.star", `
br = bridge("fdbr").up()
first = None
for i in range(40):
    n = netns("fd-%d" % i)
    a, b = veth("fdv%d" % i, "eth0", peer_netns=n)
    a.master(br).up()
    b.addr("10.6.%d.1/16" % i).up()
    n.route("default", dev=b)
    if first == None:
        first = b
first.set(mtu=1400)
print(len(netns("fd-last").links()))
`)
	if err != nil {
		rollback(t, rt)
		t.Fatal(engine.Backtrace(err))
	}
	if got := openFDs(t) - before; got > 3*8+4 {
		t.Errorf("%d descriptors of namespaces and sockets open for a lab of 40, want at most %d", got, 3*8+4)
	}
	if !strings.Contains(out, "1\n") {
		t.Errorf("output: %q", out)
	}
	if mtu := nstest.Ip(t, "fd-0", "-o", "link", "show", "eth0"); !strings.Contains(mtu, "mtu 1400") {
		t.Errorf("the first namespace's link, set after 39 others: %s", mtu)
	}
	rollback(t, rt)
}
