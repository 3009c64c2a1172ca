package builtins_test

import (
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// Every bad argument is rejected at the call with the builtin, the parameter
// and the recipe's file:line, and the recipe's earlier changes roll back.
func TestValidation(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"long name", `veth("averyveryverylongname", "b")`, `veth: for parameter name: "averyveryverylongname" is longer than 15 bytes`},
		{"slash", `bridge("a/b")`, `bridge: for parameter name: "a/b": an interface name cannot contain '/'`},
		{"space", `bridge("a b")`, `cannot contain ' '`},
		{"colon", `bridge("a:1")`, `cannot contain ':'`},
		{"empty", `bridge("")`, `an interface name cannot be empty`},
		{"netns empty", `netns("")`, `netns: for parameter name: a namespace name cannot be empty`},
		{"netns host", `netns("host")`, `use host()`},
		{"netns dot", `netns("..")`, `cannot start with '.'`},
		{"netns slash", `netns("a/b")`, `cannot contain '/'`},
		{"cidr", `bridge("br0").addr("10.0.0/24")`, `addr: for parameter cidr: "10.0.0/24" is not a valid CIDR`},
		{"cidr octet", `bridge("br0").addr("300.1.1.1/24")`, `"300.1.1.1/24" is not a valid CIDR`},
		{"cidr bits", `bridge("br0").addr("10.0.0.1/33")`, `is not a valid CIDR`},
		{"mac", `bridge("br0", mac="zz:zz")`, `bridge: for parameter "mac": "zz:zz" is not a MAC address`},
		{"mac multicast", `bridge("br0", mac="01:00:5e:00:00:01")`, `is a multicast address`},
		{"mtu", `bridge("br0", mtu=10)`, `bridge: for parameter "mtu": 10 is not an MTU`},
		{"mode", `a, b = veth("a", "b"); macvlan("m", parent=a, mode="weird")`, `macvlan: for parameter mode: "weird" is not a mode`},
		{"route host bits", `n = netns("n"); n.route("10.0.0.1/24", via="10.0.0.254")`, `has host bits set (did you mean 10.0.0.0/24?)`},
		{"route needs via", `n = netns("n"); n.route("10.0.0.0/24")`, `a route needs via= or dev=`},
		{"route family", `n = netns("n"); n.route("default", via="fd00::1", dev="lo"); n.route("10.0.0.0/8", via="fd00::1")`, `different address families`},
		{"route in host", `host().route("10.9.0.0/16", via="192.0.2.1")`, `never changes the machine's own routing`},
		{"route type", `n = netns("n"); n.route("10.0.0.0/24", type="blackhol")`, `route: for parameter type: "blackhol" is not a route type (unicast, blackhole, unreachable, prohibit)`},
		{"route type via", `n = netns("n"); n.route("10.0.0.0/24", type="blackhole", via="10.0.1.1")`, `a blackhole route takes neither via= nor dev=`},
		{"route table local", `n = netns("n"); n.route("10.0.0.0/24", dev="lo", table=255)`, `route: for parameter "table": 255 is the kernel's local table`},
		{"route table range", `n = netns("n"); n.route("10.0.0.0/24", dev="lo", table=0)`, `0 is not a routing table`},
		{"route src family", `n = netns("n"); n.route("10.0.0.0/24", dev="lo", src="fd00::1")`, `different address families`},
		{"blackhole in host", `host().route("10.9.0.0/16", type="blackhole")`, `a blackhole route in the host namespace would take the machine's traffic`},
		{"rule in host", `host().rule(src="10.9.0.0/16", table=100)`, `rule: a rule in the host namespace would route the machine's traffic`},
		{"rule needs table", `netns("n").rule(src="10.9.0.0/16")`, `rule: missing argument for table`},
		{"rule priority", `netns("n").rule(table=10, priority=32766)`, `32766 is not a rule's priority`},
		{"rule iif", `netns("n").rule(table=10, iif="eth7")`, `rule: for parameter iif: no link "eth7" in netns "n"`},
		{"vni range", `vxlan("vx0", 16777216, netns=netns("n"))`, `vxlan: for parameter vni: 16777216 is not a VXLAN network identifier (0 to 16777215)`},
		{"vxlan remote and group", `vxlan("vx0", 1, netns=netns("n"), remote="10.0.0.1", group="239.1.1.1")`, `remote= and group= are exclusive`},
		{"vxlan group unicast", `vxlan("vx0", 1, netns=netns("n"), group="10.0.0.1")`, `for parameter group: 10.0.0.1 is not a multicast address`},
		{"vxlan group no parent", `vxlan("vx0", 1, netns=netns("n"), group="239.1.1.1")`, `a multicast group needs parent=`},
		{"vxlan port", `vxlan("vx0", 1, netns=netns("n"), port=0)`, `for parameter port: 0 is not a UDP port`},
		{"vxlan parent elsewhere", `a, b = veth("a", "b", peer_netns=netns("n")); vxlan("vx0", 1, netns=host(), parent=b)`, `a vxlan sends by a link of its own namespace`},
		{"fdb on a veth", `a, b = veth("a", "b", peer_netns=netns("n")); b.fdb("02:00:00:00:00:01", dst="10.0.0.1")`, `dst= is a vxlan's own entry's`},
		{"fdb needs dst", `vxlan("vx0", 1, netns=netns("n")).fdb("02:00:00:00:00:01")`, `a vxlan's entry needs dst=`},
		{"fdb mac", `vxlan("vx0", 1, netns=netns("n")).fdb("zz", dst="10.0.0.1")`, `fdb: for parameter mac: "zz" is not a MAC address`},
		{"rate 0", `a, b = veth("a", "b", peer_netns=netns("n")); b.shape(rate=0)`, `shape: for parameter rate: 0 is not a rate`},
		{"rate text", `a, b = veth("a", "b", peer_netns=netns("n")); b.shape(rate="fast")`, `shape: for parameter rate: "fast" is not a rate`},
		{"burst without rate", `a, b = veth("a", "b", peer_netns=netns("n")); b.shape(burst=1000)`, `burst= and latency= are a rate's`},
		{"loss range", `a, b = veth("a", "b", peer_netns=netns("n")); b.shape(loss=200)`, `for parameter loss: 200 is not a percentage`},
		{"dnat port", `nat.dnat(netns("n"), dst="10.0.0.1", to="10.0.1.1", port=70000)`, `nat.dnat: for parameter "port": 70000 is not a port`},
		{"dnat proto", `nat.dnat(netns("n"), dst="10.0.0.1", to="10.0.1.1", proto="icmp", port=1)`, `for parameter proto: "icmp" is not a protocol with ports`},
		{"sysctl host", `host().sysctl("net.ipv4.ip_forward", "1")`, `is a setting of the machine`},
		{"sysctl key", `netns("n").sysctl("kernel.panic", "1")`, `is not a network sysctl`},
		{"duplicate netns", `netns("a"); netns("a")`, `netns: a namespace named "a" already exists`},
		{"duplicate link", `bridge("br0"); bridge("br0")`, `bridge: a link named "br0" already exists in netns "host"`},
		{"veth same names", `veth("a", "a")`, `both ends are named "a"`},
		{"veth peer collides", `n = netns("n"); veth("x", "lo", peer_netns=n)`, `a link named "lo" already exists in netns "n"`},
		{"foreign link", `host().link("lo").up()`, `up: link "lo" in netns "host" was not created by this lab`},
		{"missing link", `netns("n").link("eth9")`, `link: there is no link "eth9" in netns "n"`},
		{"master across ns", `n = netns("n"); br = bridge("br0"); a, b = veth("a", "b", peer_netns=n); b.master(br)`, `a port must be in its bridge's namespace`},
		{"master not bridge", `a, b = veth("a", "b"); a.master(b)`, `is a veth, not a bridge`},
		{"foreign parent", `macvlan("m", parent=host().link("lo"))`, `macvlan: parent: link "lo" in netns "host" was not created by this lab`},
		{"vlan id", `a, b = veth("a", "b"); vlan("a.5000", parent=a, id=5000)`, `5000 is not a VLAN id`},
		{"timeout", `exec_in(host(), "true", timeout="-1s")`, `is not a positive duration`},
		{"empty cmd", `exec_in(host(), [])`, `empty command`},
		{"unknown attr", `netns("n").lnk`, `has no .lnk field or method (did you mean .link?)`},
		{"set nothing", `bridge("br0").set()`, `nothing to set`},
		{"ipv6 off addr", `n = netns("n", ipv6=False); a, b = veth("a", "b", peer_netns=n); b.addr("fd00::1/64")`, `IPv6 is off in netns "n"`},
		{"ipv6 off route", `n = netns("n", ipv6=False); n.route("fd00::/64", dev="lo")`, `IPv6 is off in netns "n"`},
		{"ipv6 off sysctl", `n = netns("n"); n.sysctl("net.ipv6.conf.all.disable_ipv6", "1"); n.link("lo").addr("fd00::1/128")`, `IPv6 is off in netns "n"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := kernel.NewRecorder()
			_, rt, err := runSrc(t, rec, "v.star", tt.src)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			bt := engine.Backtrace(err)
			if !strings.Contains(bt, tt.want) {
				t.Errorf("error:\n%s\nwant it to contain %q", bt, tt.want)
			}
			if !strings.Contains(bt, "v.star:1:") {
				t.Errorf("error does not name the recipe's file:line:\n%s", bt)
			}
			rollback(t, rt)
			if ns, _ := rec.NetnsExists("n"); ns {
				t.Errorf("rollback left netns n")
			}
		})
	}
}

// Derived MACs are locally administered, unicast, and the same on every run.
func TestDeterministicMACs(t *testing.T) {
	src := `
n = netns("blue")
a, b = veth("veth0", "veth1", peer_netns=n)
br = bridge("br0")
m = macvlan("mv0", parent=a, netns=n)
print(a.mac, b.mac, br.mac, m.mac)
`
	first, _, err := runSrc(t, kernel.NewRecorder(), "m.star", src)
	if err != nil {
		t.Fatal(err)
	}
	second, _, _ := runSrc(t, kernel.NewRecorder(), "m.star", src)
	if first != second {
		t.Errorf("MACs differ between runs:\n%s%s", first, second)
	}
	for _, mac := range strings.Fields(first) {
		var b0 byte
		if _, err := fmtSscanf(mac[:2], &b0); err != nil || b0&1 != 0 || b0&2 == 0 {
			t.Errorf("%s is not a locally administered unicast MAC", mac)
		}
	}
}

// wait_until returns fn's first true value; after its timeout it fails at
// its line, saying what it waited for; an error in fn fails at once.
func TestWaitUntil(t *testing.T) {
	// A kernel that is not a Planner, so that wait_until waits.
	live := struct{ kernel.Kernel }{kernel.NewRecorder()}
	out, _, err := runSrc(t, live, "w.star", `
n = {"i": 0}
def third():
    n["i"] += 1
    return n["i"] == 3 and "yes"
print(wait_until(third, interval = "1ms"))
`)
	if err != nil || out != "yes\n" {
		t.Errorf("out %q, err %v", out, err)
	}
	// Planning, fn is called once, and the plan goes on.
	if out, _, err := runSrc(t, kernel.NewRecorder(), "w.star", "def no():\n    return False\nprint(wait_until(no))\n"); err != nil || out != "False\n" {
		t.Errorf("planning: out %q, err %v", out, err)
	}
	for _, c := range []struct{ src, want string }{
		{"def no():\n    return False\nwait_until(no, timeout = \"20ms\", interval = \"5ms\", what = \"the moon\")\n", `w.star:3:11: in <toplevel>` + "\n" + `Error in wait_until: the moon: not true after 2`},
		{"def no():\n    return None\nwait_until(no, timeout = \"10ms\")\n", `Error in wait_until: no: not true after 1`},
		{"def bad():\n    return 1 // 0\nwait_until(bad)\n", `floored division by zero`},
		{"wait_until(1)\n", `wait_until: for parameter fn: got int, want callable`},
		{"wait_until(print, timeout = \"-1s\")\n", `is not a positive duration`},
	} {
		_, _, err := runSrc(t, live, "w.star", c.src)
		if err == nil || !strings.Contains(engine.Backtrace(err), c.want) {
			t.Errorf("%q: err = %v, want %q", c.src, err, c.want)
		}
	}
}

// ping's and tcp_connect's arguments are checked before anything is sent.
func TestPingOptionsValidation(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`ping(netns("a"), "10.0.0.1", src = "fd00::1")`, `is not of 10.0.0.1's family`},
		{`ping(netns("a"), "10.0.0.1", src = "x")`, `"x" is not an IP address`},
		{`ping(netns("a"), "10.0.0.1", size = 7)`, `size: 7 is out of range (8 to 65507)`},
		{`ping(netns("a"), "10.0.0.1", ttl = 0)`, `0 is not a TTL (1 to 255)`},
		{`reach(netns("a"), "10.0.0.1", ttl = 256)`, `256 is not a TTL`},
		{`tcp_connect(netns("a"), "10.0.0.1", 0)`, `0 is not a port`},
		{`tcp_connect(netns("a"), "nope", 80)`, `"nope" is not an IP address`},
	} {
		_, _, err := runSrc(t, kernel.NewRecorder(), "v.star", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(engine.Backtrace(err), "v.star:1:") {
			t.Errorf("%s: err = %v, want %q at v.star:1", c.src, err, c.want)
		}
	}
}

// A name the recipe itself used is refused as the recipe's own, not as a
// stranger's.
func TestNameReusedByTheRecipe(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"netns(\"a\")\nnetns(\"a\")\n", `a namespace named "a" already exists: this recipe made it`},
		{"bridge(\"b0\")\nbridge(\"b0\")\n", `a link named "b0" already exists in netns "host": this recipe made it`},
	} {
		_, rt, err := runSrc(t, kernel.NewRecorder(), "v.star", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(engine.Backtrace(err), "v.star:2:") {
			t.Errorf("%q: err = %v, want %q", c.src, err, c.want)
		}
		rollback(t, rt)
	}
}
