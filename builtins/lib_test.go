package builtins_test

import (
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// A router on two LANs: lan() and host_on() take a namespace of the lab's
// and join it as it is, with the interface each LAN names.
func TestLanTakesANamespace(t *testing.T) {
	src := `
load("@std//lan.star", "lan", "host_on")
r = netns("r")
a = lan("br-a", {r: struct(addr = "10.1.0.1/24", ifname = "eth-a"), "a1": "10.1.0.2/24"})
b = lan("br-b", {r: struct(addr = "10.2.0.1/24", ifname = "eth-b"), "b1": "10.2.0.2/24"})
h = host_on(b.bridge, netns("b2"), "10.2.0.3/24", ifname = "eth0")
print(sorted(a.hosts.keys()), a.hosts["r"] == r, h.name)
`
	rec := kernel.NewRecorder()
	out, rt, err := runSrc(t, rec, "lan.star", src)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	defer rollback(t, rt)
	if out != "[\"a1\", \"r\"] True b2\n" {
		t.Errorf("printed %q", out)
	}
	plan := strings.Join(rec.Log, "\n")
	for _, want := range []string{"ip -n r addr add 10.1.0.1/24 dev eth-a", "ip -n r addr add 10.2.0.1/24 dev eth-b"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan has no %q:\n%s", want, plan)
		}
	}
	if strings.Count(plan, "ip netns add r") != 1 {
		t.Errorf("namespace r made %d times", strings.Count(plan, "ip netns add r"))
	}
}

// autonumber gives munet's numbering: networks from a base, p2p /30s or
// /31s, loopbacks.
func TestAutonumber(t *testing.T) {
	src := `
load("@std//topo.star", "autonumber", "host_addr")
n = autonumber(networks = ["net0", "net1"], p2p = [("r1", "r2"), ("r2", "r3")], loopbacks = ["r1", "r2"])
print(n.networks, n.p2p, n.loopbacks)
print(autonumber(p2p = [("a", "b"), ("b", "c")], p2p_bits = 31).p2p)
print(host_addr(n.networks["net1"], 5))
`
	out, rt, err := runSrc(t, kernel.NewRecorder(), "an.star", src)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	rollback(t, rt)
	want := `{"net0": "10.0.0.0/24", "net1": "10.0.1.0/24"} [("10.254.0.1/30", "10.254.0.2/30"), ("10.254.0.5/30", "10.254.0.6/30")] {"r1": "10.255.0.1/32", "r2": "10.255.0.2/32"}
[("10.254.0.0/31", "10.254.0.1/31"), ("10.254.0.2/31", "10.254.0.3/31")]
10.0.1.5/24
`
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}
