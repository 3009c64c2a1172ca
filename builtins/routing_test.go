package builtins_test

import (
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// A blackhole route drops what it takes (unreachable() holds), an
// unreachable route has the kernel refuse to send (ping() reports "no
// route to host"), and both are in the kernel as iproute2 shows them, in
// the main table or another.
func TestRouteTypes(t *testing.T) {
	out, _ := onKernel(t, "types.star", `
a = netns("rt-a"); b = netns("rt-b")
x, y = veth("x", "y", netns=a, peer_netns=b)
x.addr("10.7.0.1/24").up(); y.addr("10.7.0.2/24").up()
b.link("lo").addr("10.7.9.1/32", "10.7.9.2/32", "10.7.9.3/32")
a.route("10.7.9.1/32", via="10.7.0.2")
reach(a, "10.7.9.1")
a.route("10.7.9.2/32", type="blackhole")
unreachable(a, "10.7.9.2")
a.route("10.7.9.3/32", type="unreachable")
print("ping:", ping(a, "10.7.9.3", count=1).error)
a.route("10.7.9.0/24", type="prohibit", table=100)
a.route("10.7.8.0/24", via="10.7.0.2", table=100, src="10.7.0.1", metric=5)
`)
	if !strings.Contains(out, "ping: no route to host") {
		t.Errorf("ping through an unreachable route: %q, want the kernel's \"no route to host\"", out)
	}
	got := nstest.Ip(t, "rt-a", "route", "show", "table", "all")
	for _, want := range []string{
		"blackhole 10.7.9.2 proto 78",
		"unreachable 10.7.9.3 proto 78",
		"prohibit 10.7.9.0/24 table 100 proto 78",
		"10.7.8.0/24 via 10.7.0.2 dev x table 100 proto 78 src 10.7.0.1 metric 5",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ip route show table all has no %q:\n%s", want, got)
		}
	}
}

// A rule sends the replies of one source address through a second table,
// whose route takes a longer way: the TTLs the client sees differ by the
// extra hop. The rule is in the kernel as `ip rule` shows it, and goes with
// the lab.
func TestPolicyRouting(t *testing.T) {
	out, _ := onKernel(t, "policy.star", `
c = netns("pr-c"); r = netns("pr-r"); x = netns("pr-x"); d = netns("pr-d")
def wire(n1, a1, n2, a2, name):
    e1, e2 = veth(name + "1", name + "2", netns=n1, peer_netns=n2)
    e1.addr(a1).up(); e2.addr(a2).up()
wire(c, "10.6.1.2/24", r, "10.6.1.1/24", "cr")
wire(r, "10.6.2.1/24", d, "10.6.2.2/24", "rd")
wire(r, "10.6.3.1/24", x, "10.6.3.2/24", "rx")
wire(x, "10.6.4.1/24", d, "10.6.4.2/24", "xd")
r.sysctl("net.ipv4.ip_forward", "1"); x.sysctl("net.ipv4.ip_forward", "1")
d.link("lo").addr("10.6.9.1/32", "10.6.9.2/32")
c.route("default", via="10.6.1.1")
r.route("10.6.9.0/24", via="10.6.2.2")
x.route("10.6.1.0/24", via="10.6.3.1")
d.route("default", via="10.6.2.1")
d.route("default", via="10.6.4.1", table=100)
d.rule(src="10.6.9.2", table=100, priority=100)
print("ttl", ping(c, "10.6.9.1").ttl, ping(c, "10.6.9.2").ttl)
`)
	if !strings.Contains(out, "ttl 63 62") {
		t.Errorf("reply TTLs: %q, want 63 (main table: through r) and 62 (table 100: through x and r)", out)
	}
	if got := nstest.Ip(t, "pr-d", "rule"); !strings.Contains(got, "100:\tfrom 10.6.9.2 lookup 100 proto 78") {
		t.Errorf("ip rule:\n%s", got)
	}
}

// A rule of the lab's is removed by rule_del and put back by the rollback;
// one that is not the lab's is refused.
func TestRuleDelRollsBack(t *testing.T) {
	s := kernelSession(t)
	s.exec(`
n = netns("rd-n")
n.rule(dst="10.5.0.0/16", table=7)
`)
	rules := func() string { return nstest.Ip(t, "rd-n", "rule") }
	before := rules()
	if !strings.Contains(before, "from all to 10.5.0.0/16 lookup 7 proto 78") {
		t.Fatalf("ip rule:\n%s", before)
	}
	mark := s.rt.Journal.Len()
	s.exec(`n.rule_del(dst="10.5.0.0/16", table=7)`)
	if strings.Contains(rules(), "10.5.0.0/16") {
		t.Errorf("after rule_del:\n%s", rules())
	}
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	if after := rules(); after != before {
		t.Errorf("after the rollback:\n%s\nwant:\n%s", after, before)
	}
	if _, err := s.eval(`n.rule_del(dst="10.5.0.0/16", table=8)`); err == nil || !strings.Contains(err.Error(), "removes only the rules a lab added") {
		t.Errorf("rule_del of a rule the lab has not: %v", err)
	}
}
