package builtins_test

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

const removalTopology = `
a = netns("rm-a"); b = netns("rm-b")
x, y = veth("x", "y", netns=a, peer_netns=b)
x.addr("10.9.0.1/24", "10.9.5.1/24", "fd09::1/64").up()
y.addr("10.9.0.2/24").up()
a.route("10.1.0.0/16", via="10.9.0.2")
a.route("10.2.0.0/16", via="10.9.0.2", metric=7)
`

// seen is namespace rm-a as iproute2 shows it: its global addresses (not
// the links' state, nor their link-local addresses, which come in their
// time) and its routes.
func seen(t *testing.T) string {
	t.Helper()
	return globalAddrs(t, "rm-a") + nstest.Ip(t, "rm-a", "route") + nstest.Ip(t, "rm-a", "-6", "route", "show", "scope", "global")
}

// globalAddrs lists a namespace's global addresses by link, sorted.
func globalAddrs(t *testing.T, ns string) string {
	t.Helper()
	var addrs []string
	for _, line := range strings.Split(nstest.Ip(t, ns, "-br", "addr", "show", "scope", "global"), "\n") {
		if f := strings.Fields(line); len(f) > 2 {
			addrs = append(addrs, strings.Split(f[0], "@")[0]+" "+strings.Join(f[2:], " ")+"\n")
		}
	}
	slices.Sort(addrs)
	return strings.Join(addrs, "")
}

// An input that removes addresses and a route of the lab's and replaces
// another, then fails, leaves the lab as it was before it (as the REPL rolls
// back an input); what it removed is the lab's again, to remove later.
func TestRemovalsRollBack(t *testing.T) {
	s := kernelSession(t)
	s.exec(removalTopology)
	before := seen(t)
	mark := s.rt.Journal.Len()
	s.exec(`
x.addr_del("10.9.5.1/24", "fd09::1/64")
a.route("10.1.0.0/16", via="10.9.0.2", metric=0, dev=x, replace=True)
a.route_del("10.2.0.0/16")
`)
	during := seen(t)
	for _, gone := range []string{"10.9.5.1/24", "fd09::1/64", "10.2.0.0/16"} {
		if strings.Contains(during, gone) {
			t.Errorf("%s is still there after its removal:\n%s", gone, during)
		}
	}
	if !strings.Contains(during, "10.1.0.0/16 via 10.9.0.2 dev x proto 78") {
		t.Errorf("the replaced route:\n%s", during)
	}
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	if after := seen(t); after != before {
		t.Errorf("after the rollback:\n%s\nwant, as before:\n%s", after, before)
	}
	s.exec(`x.addr_del("10.9.5.1/24"); a.route_del("10.2.0.0/16", metric=7)`)
}

// Only what the lab made may be removed or replaced: the kernel's link-local
// address and subnet route, an address and a route added by hand (named
// like the lab's would be). Each is refused before any change.
func TestRemovalsOnlyTheLabs(t *testing.T) {
	s := kernelSession(t)
	s.exec(removalTopology)
	for _, c := range [][]string{
		{"addr", "add", "10.9.7.1/24", "dev", "x"},
		{"route", "add", "10.3.0.0/16", "via", "10.9.0.2"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", "rm-a"}, c...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", c, err, out)
		}
	}
	ll := strings.Fields(nstest.Ip(t, "rm-a", "-6", "-br", "addr", "show", "x", "scope", "link"))
	if len(ll) < 3 {
		t.Fatalf("no link-local address on x: %v", ll)
	}
	n := s.rt.Journal.Len()
	for _, c := range []struct{ src, want string }{
		{`x.addr_del("10.9.7.1/24")`, `addr_del: 10.9.7.1/24 on "x" in netns "rm-a" is not an address this lab added`},
		{`x.addr_del("` + ll[2] + `")`, "is not an address this lab added"},
		{`a.route_del("10.9.0.0/24")`, `route_del: netns "rm-a" has no route of this lab's to 10.9.0.0/24`},
		{`a.route_del("10.3.0.0/16")`, `has no route of this lab's to 10.3.0.0/16`},
		{`a.route("10.3.0.0/16", via="10.9.0.2", replace=True)`, "a route to that destination exists, not the lab's (replace=True replaces only the lab's own)"},
		{`a.route("10.1.0.0/16", via="10.9.0.2", dev=x)`, "(the lab's: pass replace=True to replace it)"},
		{`a.route_del("default")`, `has no route of this lab's to default`},
	} {
		_, err := s.eval(c.src)
		if err == nil || !strings.Contains(engine.Backtrace(err), c.want) {
			t.Errorf("%s: %v, want %q", c.src, err, c.want)
		}
	}
	if s.rt.Journal.Len() != n {
		t.Errorf("refused removals were journaled: %v", s.rt.Journal.Since(n))
	}
	for _, still := range []string{"10.9.7.1/24", "10.3.0.0/16 via 10.9.0.2"} {
		if got := seen(t); !strings.Contains(got, still) {
			t.Errorf("%s, not the lab's, is gone:\n%s", still, got)
		}
	}
	exec.Command("ip", "-n", "rm-a", "route", "del", "10.3.0.0/16").Run()
	exec.Command("ip", "-n", "rm-a", "addr", "del", "10.9.7.1/24", "dev", "x").Run()
}

// kernelSession is a session on the real kernel whose lab the test's end
// rolls back (and nstest checks it left nothing).
func kernelSession(t *testing.T) *session {
	t.Helper()
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	s := newSession(t, k)
	t.Cleanup(func() { rollback(t, s.rt); k.Close() })
	return s
}

// eval runs src as the session's next input, and returns its error.
func (s *session) eval(src string) (starlark.StringDict, error) {
	return starlark.ExecFileOptions(engine.FileOptions, s.thread, "input.star", src, s.globals)
}

const deletionTopology = `
a = netns("rm-a"); b = netns("rm-b")
br = bridge("br0", netns=a).up()
x, y = veth("x", "y", netns=a, peer_netns=b)
x.master(br).up()
x.set(hairpin=True)
a.sysctl("net.ipv4.conf.x.forwarding", "1")
br.addr("10.9.0.1/24")
y.set(mtu=1400)
y.addr("10.9.0.2/24", "fd09::2/64").up()
b.route("10.1.0.0/16", via="10.9.0.1")
p, q = veth("p", "q", netns=a, peer_netns=b)
p.master(br).up()
`

// linksOf is a namespace's links as iproute2 shows them, by name: kind,
// MAC, MTU, master, admin state; with its global addresses and routes.
func linksOf(t *testing.T, ns string) string {
	t.Helper()
	var lines []string
	for _, line := range strings.Split(nstest.Ip(t, ns, "-o", "-d", "link"), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		name := strings.Split(strings.TrimSuffix(f[1], ":"), "@")[0]
		keep := []string{name, "down"}
		if strings.Contains(","+strings.Trim(f[2], "<>")+",", ",UP,") {
			keep[1] = "up"
		}
		for i, w := range f {
			switch w {
			case "mtu", "master", "link/ether":
				keep = append(keep, w, f[i+1])
			case "veth", "bridge":
				keep = append(keep, w)
			}
		}
		lines = append(lines, strings.Join(keep, " "))
	}
	slices.Sort(lines) // a link made again has another index
	return strings.Join(lines, "\n") + "\n"
}

func labView(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, ns := range []string{"rm-a", "rm-b"} {
		b.WriteString(ns + ":\n" + linksOf(t, ns) + globalAddrs(t, ns))
		b.WriteString(nstest.Ip(t, ns, "route"))
	}
	hairpin, _ := exec.Command("bridge", "-n", "rm-a", "-d", "link", "show", "dev", "x").Output()
	fwd, _ := exec.Command("ip", "netns", "exec", "rm-a", "sysctl", "-n", "net.ipv4.conf.x.forwarding").Output()
	fmt.Fprintf(&b, "x: hairpin %t, forwarding %s", strings.Contains(string(hairpin), "hairpin on"), fwd)
	return b.String()
}

// An input that deletes a veth (both ends), a bridge with ports, and makes
// a new link with a freed name, then fails, leaves the lab as it was: the
// same links (MACs, MTU, masters, state), addresses and routes. A teardown
// after deletions removes the rest.
func TestDeleteRollsBack(t *testing.T) {
	s := kernelSession(t)
	s.exec(deletionTopology)
	before := labView(t)
	mark := s.rt.Journal.Len()
	s.exec(`
y.delete()
br.delete()
x2, y2 = veth("x", "y", netns=a, peer_netns=b)
`)
	during := labView(t)
	if strings.Contains(during, "br0") || strings.Contains(during, "1400") {
		t.Errorf("the deleted bridge or veth is still there:\n%s", during)
	}
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	if after := labView(t); after != before {
		t.Errorf("after the rollback:\n%s\nwant, as before:\n%s", after, before)
	}
	if _, err := s.eval(`y.up()`); err != nil {
		t.Errorf("the link the rollback put back is the lab's again: %v", err)
	}
	// Deleted for good, then the lab taken down.
	s.exec(`y.delete(); br.delete()`)
	if _, err := s.eval(`x.up()`); err == nil || !strings.Contains(err.Error(), `link "x" in netns "rm-a" was deleted`) {
		t.Errorf("a deleted link's method: %v", err)
	}
}

// A link the lab did not make is refused (lo), and so is one made by
// someone else in the place of the lab's (a decoy of its name): only the
// lab's own go.
func TestDeleteOnlyTheLabs(t *testing.T) {
	s := kernelSession(t)
	s.exec(`m = netns("rm-m")` + "\n" + `v, w = veth("rm-v", "rm-w", peer_netns=m)`)
	if _, err := s.eval(`m.link("lo").delete()`); err == nil || !strings.Contains(err.Error(), "was not created by this lab") {
		t.Errorf("deleting lo: %v", err)
	}
	// Someone replaces the lab's host end with a link of their own.
	for _, c := range [][]string{{"link", "del", "rm-v"}, {"link", "add", "rm-v", "type", "veth", "peer", "name", "rm-decoy"}} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", c, err, out)
		}
	}
	defer exec.Command("ip", "link", "del", "rm-v").Run()
	if _, err := s.eval(`v.delete()`); err == nil {
		t.Errorf("deleting a decoy of the lab's link's name: no error")
	}
	if out := nstest.Ip(t, "", "-br", "link", "show", "rm-v"); !strings.Contains(out, "rm-v") {
		t.Errorf("the decoy is gone")
	}
	// A bridge of the lab's in the host with a port of someone else's:
	// deleting it would release that port, and the undo take it.
	s.exec(`hb = bridge("rm-hb")`)
	for _, c := range [][]string{{"link", "add", "rm-fp", "type", "veth", "peer", "name", "rm-fq"}, {"link", "set", "rm-fp", "master", "rm-hb"}} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", c, err, out)
		}
	}
	defer exec.Command("ip", "link", "del", "rm-fp").Run()
	if _, err := s.eval(`hb.delete()`); err == nil || !strings.Contains(err.Error(), `bridge "rm-hb" has a port that is not the lab's, "rm-fp"`) {
		t.Errorf("deleting a host bridge with a foreign port: %v", err)
	}
	if out := nstest.Ip(t, "", "-o", "link", "show", "rm-fp"); !strings.Contains(out, "master rm-hb") {
		t.Errorf("the foreign port: %s", out)
	}
}

// What the kernel would take along is refused before any change: the
// first IPv4 address of a subnet with others on the link (the kernel
// removes them with it), and a veth whose far end carries a macvlan of the
// lab's (deleted with it).
func TestRemovalsThatWouldTakeMore(t *testing.T) {
	s := kernelSession(t)
	s.exec(removalTopology + `
x.addr("10.9.5.2/24")
m = macvlan("mv0", parent=y, netns=b)
`)
	n := s.rt.Journal.Len()
	for _, c := range []struct{ src, want string }{
		{`x.addr_del("10.9.5.1/24")`, "it is the first address of its subnet there, and the kernel would remove 10.9.5.2/24 with it"},
		{`x.delete()`, `macvlan "mv0" in netns "rm-b" is stacked on "y": delete it first`},
	} {
		if _, err := s.eval(c.src); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.src, err, c.want)
		}
	}
	if s.rt.Journal.Len() != n {
		t.Errorf("refused removals were journaled: %v", s.rt.Journal.Since(n))
	}
	// Both in one removal: taken together, and put back with the
	// primary first, as it was.
	before := globalAddrs(t, "rm-a")
	mark := s.rt.Journal.Len()
	s.exec(`x.addr_del("10.9.5.1/24", "10.9.5.2/24")`)
	if got := globalAddrs(t, "rm-a"); strings.Contains(got, "10.9.5.") {
		t.Errorf("after the removal of both: %s", got)
	}
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	if after := globalAddrs(t, "rm-a"); after != before {
		t.Errorf("after the rollback: %s, want %s", after, before)
	}
	s.exec(`m.delete(); x.delete()`)
}

// The README's failover as one input on a lab made before it: a link goes
// down (the kernel drops its IPv6 addresses and the routes through it), the
// route is replaced by one through the other link, then the input fails.
// The rollback puts the lab back as it was before the input: the link up,
// with its addresses and the routes through it.
func TestReplaceAfterLinkDownRollsBack(t *testing.T) {
	s := kernelSession(t)
	s.exec(`
a, b = netns("rm-a"), netns("rm-b")
p1a, p1b = veth("p1a", "p1b", netns = a, peer_netns = b)
p2a, p2b = veth("p2a", "p2b", netns = a, peer_netns = b)
p1a.addr("10.1.0.1/24").up(); p1b.addr("10.1.0.2/24").up()
p2a.addr("10.2.0.1/24", "fd02::1/64").up(); p2b.addr("10.2.0.2/24", "fd02::2/64").up()
a.route("10.9.9.9/32", via = "10.2.0.2", metric = 10)
a.route("fd09::/64", via = "fd02::2")
`)
	before := seen(t)
	mark := s.rt.Journal.Len()
	s.exec(`
p2a.down()
a.route("10.9.9.9/32", via = "10.1.0.2", metric = 10, replace = True)
`)
	if got := nstest.Ip(t, "rm-a", "route", "show", "10.9.9.9"); !strings.Contains(got, "via 10.1.0.2") {
		t.Errorf("the route after the failover: %q", got)
	}
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	if after := seen(t); after != before {
		t.Errorf("after the rollback:\n%s\nwant, as before:\n%s", after, before)
	}
}

// An input that deletes a namespace of the lab's (its links, their veth
// ends elsewhere, its NAT), makes another of its name, then fails, leaves
// the lab as it was; the namespace put back is the lab's again, and a
// teardown after a deletion for good removes the rest. The host, and a
// namespace a process of the lab's runs in, are refused.
func TestNetnsDeleteRollsBack(t *testing.T) {
	s := kernelSession(t)
	s.exec(deletionTopology + `
nat.masquerade(a, out=br, src="10.9.0.0/24")
a.sysctl("net.ipv4.ip_forward", "1")
hv, hw = veth("rm-hv", "rm-hw", peer_netns=a)
hw.up()
`)
	view := func() string {
		nft, _ := exec.Command("ip", "netns", "exec", "rm-a", "nft", "list", "ruleset").Output()
		fwd, _ := exec.Command("ip", "netns", "exec", "rm-a", "sysctl", "-n", "net.ipv4.ip_forward").Output()
		host := strings.Fields(nstest.Ip(t, "", "-br", "link", "show", "rm-hv")) // its peer's index aside
		return labView(t) + string(nft) + "forward " + string(fwd) + strings.Join(host[1:], " ")
	}
	before := view()
	mark := s.rt.Journal.Len()
	s.exec(`
a.delete()
a2 = netns("rm-a")
`)
	if got := nstest.Ip(t, "rm-a", "-br", "link"); strings.Contains(got, "br0") || strings.Contains(got, "hw") {
		t.Errorf("the deleted namespace's links are in the new one:\n%s", got)
	}
	if got := nstest.Ip(t, "rm-b", "-br", "link"); strings.Contains(got, "y") || strings.Contains(got, "q") {
		t.Errorf("the far ends of the deleted namespace's veths are there:\n%s", got)
	}
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	if after := view(); after != before {
		t.Errorf("after the rollback:\n%s\nwant, as before:\n%s", after, before)
	}
	if _, err := s.eval(`br.addr("10.9.1.1/24")`); err != nil {
		t.Errorf("the namespace the rollback put back is the lab's again: %v", err)
	}
	if _, err := s.eval(`host().delete()`); err == nil || !strings.Contains(err.Error(), "host() is the machine's namespace") {
		t.Errorf("deleting the host: %v", err)
	}
	s.exec(`sleeper = spawn_in(b, ["sleep", "100"])`)
	if _, err := s.eval(`b.delete()`); err == nil || !strings.Contains(err.Error(), `runs in netns "rm-b": stop it first`) {
		t.Errorf("deleting a namespace a process runs in: %v", err)
	}
	s.exec(`sleeper.stop()`)
	// The teardown (the test's end) knows the namespace put back by its
	// new inode, and nstest finds nothing left.
}

// A namespace someone made in the place of the lab's (deleted by hand, made
// again under its name) is not the lab's to delete: ns.delete() refuses it,
// and it is left as it is.
func TestNetnsDeleteOnlyTheLabs(t *testing.T) {
	s := kernelSession(t)
	s.exec(`d = netns("rm-decoy")`)
	for _, c := range [][]string{{"netns", "del", "rm-decoy"}, {"netns", "add", "rm-decoy"}} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", c, err, out)
		}
	}
	defer exec.Command("ip", "netns", "del", "rm-decoy").Run()
	mark := s.rt.Journal.Len()
	if _, err := s.eval(`d.delete()`); err == nil || !strings.Contains(err.Error(), "not created by this lab") {
		t.Errorf("deleting a decoy of the lab's namespace: %v", err)
	}
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err != nil || !strings.Contains(string(out), "rm-decoy") {
		t.Errorf("the decoy is gone: %s %v", out, err)
	}
}

// Removing a link's last IPv4 address takes the routes through it along,
// in every table (the kernel flushes them): the removal records them, its
// undo puts them back, and the lab no longer counts them as its own.
func TestAddrDelTakesRoutes(t *testing.T) {
	s := kernelSession(t)
	s.exec(`
a = netns("rm-a"); b = netns("rm-b")
x, y = veth("x", "y", netns=a, peer_netns=b)
x.addr("10.9.0.1/24").up(); y.addr("10.9.0.2/24").up()
a.route("10.1.0.0/16", via="10.9.0.2")
a.route("10.2.0.0/16", via="10.9.0.2", table=100)
`)
	routes := func() string { return nstest.Ip(t, "rm-a", "route", "show", "table", "all", "proto", "78") }
	before := routes()
	mark := s.rt.Journal.Len()
	s.exec(`x.addr_del("10.9.0.1/24")`)
	if got := routes(); got != "" {
		t.Errorf("routes after the last address went: %q", got)
	}
	if got := s.rt.Routes("rm-a"); len(got) != 0 {
		t.Errorf("the lab's routes after the last address went: %v", got)
	}
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	if after := routes(); after != before {
		t.Errorf("after the rollback:\n%s\nwant:\n%s", after, before)
	}
}
