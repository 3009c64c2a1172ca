package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/nstest/cluster"
)

// acrossRecipe is a lab across three machines: a router on m1, LAN a of
// 20 hosts whose bridge is on m2 and whose hosts are half on m2, half on
// m3 (a bridge spanning two machines), LAN b of 20 hosts on m3.
const acrossRecipe = `
load("@std//lan.star", "host_on")
m1 = machine("m1", ssh = "m1", ssh_config = CONFIG)
m2 = machine("m2", ssh = "m2", ssh_config = CONFIG)
m3 = machine("m3", ssh = "m3", ssh_config = CONFIG)
r = netns("r", on = m1)
r.sysctl("net.ipv4.ip_forward", "1")
bra = bridge("bra", netns = netns("swa", on = m2))
bra.up()
brb = bridge("brb", on = m3)
brb.up()
hosts = []
for i in range(1, 21):
    h = netns("a%d" % i, on = m2 if i <= 10 else m3)
    hosts.append(host_on(bra, h, "10.1.0.%d/24" % (10 + i), gw = "10.1.0.1"))
for i in range(1, 21):
    hosts.append(host_on(brb, netns("b%d" % i, on = m3), "10.2.0.%d/24" % (10 + i), gw = "10.2.0.1"))
host_on(bra, r, "10.1.0.1/24", ifname = "eth-a")
host_on(brb, r, "10.2.0.1/24", ifname = "eth-b")
res = pingall(hosts + [r], timeout = "2s")  # one ping a pair; time for ARP on a loaded machine
bad = [(s, d) for s in res for d in res[s] if not res[s][d]]
if bad:
    fail("unreachable: %s" % bad[:5])
print("pingall ok across %d namespaces" % len(res))
print(exec_in(hosts[-1], "ip -br addr show eth0").stdout.split()[2])
if "fail" in argv:
    exec_in(hosts[-1], "exit 3")
if "sleep" in argv:
    exec_in(r, "sleep 8")
`

// across starts a cluster of three machines with nsrun and writes the
// recipe src (CONFIG its ssh_config) in a directory of its own.
func across(t *testing.T, src string, o cluster.Options) (*cluster.Cluster, string) {
	t.Helper()
	nstest.Kernel(t)
	if _, err := exec.LookPath("sshd"); err != nil {
		if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
			t.Skip("no sshd (openssh-server)")
		}
	}
	if o.Machines == 0 {
		o.Machines = 3
	}
	o.Nsrun = nsrunBin
	c := cluster.Start(t, o)
	recipe := write(t, "across.star", strings.ReplaceAll(src, "CONFIG", fmt.Sprintf("%q", c.SSHConfig)))
	return c, recipe
}

// coord runs nsrun on the coordinator.
func coord(t *testing.T, c *cluster.Cluster, args ...string) result {
	t.Helper()
	code, stdout, stderr := nstest.Run(t, c.Coordinator.Command("/usr/local/bin/nsrun", args...))
	return result{code, stdout, stderr}
}

// leftOn lists what machine m has of a lab: named namespaces, links but
// its own, lab records, nsrun processes.
func leftOn(t *testing.T, m *cluster.Machine) []string {
	t.Helper()
	var left []string
	_, out, _ := nstest.Run(t, m.Command("ls", "-A", "/run/netns", "/run/nsrun"))
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasSuffix(l, ":") && !strings.HasPrefix(l, ".") && l != "key" {
			left = append(left, "file "+l)
		}
	}
	_, out, _ = nstest.Run(t, m.Command("ip", "-br", "link"))
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] != "lo" && !strings.HasPrefix(f[0], "ul0") {
			left = append(left, "link "+f[0])
		}
	}
	_, out, _ = nstest.Run(t, m.Command("pgrep", "-a", "-f", "nsrun (part|run)"))
	if strings.TrimSpace(out) != "" {
		left = append(left, "process "+strings.TrimSpace(out))
	}
	return left
}

// nothingLeft waits (parts roll back by themselves) until no machine of c
// has anything of a lab.
func nothingLeft(t *testing.T, c *cluster.Cluster, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var left []string
		for _, m := range append([]*cluster.Machine{c.Coordinator}, c.Machines...) {
			for _, l := range leftOn(t, m) {
				left = append(left, m.Name+": "+l)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestAcrossMachines(t *testing.T) {
	c, recipe := across(t, acrossRecipe, cluster.Options{})
	// A namespace of the coordinator's own named like one the lab makes on
	// m3 is no clash: each machine's names are checked there.
	if code, _, errs := nstest.Run(t, c.Coordinator.Command("ip", "netns", "add", "b20")); code != 0 {
		t.Fatalf("ip netns add b20 on the coordinator: %s", errs)
	}
	r := coord(t, c, "run", recipe)
	if r.code != 0 || !strings.Contains(r.stdout, "pingall ok across 41 namespaces") {
		t.Fatalf("run: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "10.2.0.30/24") { // exec_in on m3, its answer here
		t.Errorf("exec_in on m3 answered:\n%s", r.stdout)
	}
	// Each machine holds its own namespaces, and only those.
	want := map[string][]string{"m1": {"r"}, "m2": {"swa", "a1", "a10"}, "m3": {"a11", "a20", "b1", "b20"}}
	for _, m := range c.Machines {
		_, out, _ := nstest.Run(t, m.Command("ip", "netns", "list"))
		have := map[string]bool{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				have[f[0]] = true
			}
		}
		for _, ns := range want[m.Name] {
			if !have[ns] {
				t.Errorf("machine %s has no netns %s: %v", m.Name, ns, have)
			}
		}
		for _, other := range []string{"r", "swa", "b1"} {
			if have[other] && !strings.Contains(strings.Join(want[m.Name], " "), other) {
				t.Errorf("machine %s has netns %s, another machine's", m.Name, other)
			}
		}
		// Its own journal records the lab: its own steps, and the others' as away.
		_, out, _ = nstest.Run(t, m.Command("/usr/local/bin/nsrun", "ls"))
		if !strings.Contains(out, "across  up") {
			t.Errorf("machine %s: nsrun ls:\n%s", m.Name, out)
		}
	}
	// brb is in m3's own namespace.
	if _, out, _ := nstest.Run(t, c.Machine("m3").Command("ip", "-br", "link", "show", "brb")); !strings.Contains(out, "brb") {
		t.Errorf("m3 has no bridge brb in its own namespace: %q", out)
	}
	// ls names the lab's machines, and on a part which it is.
	if r := coord(t, c, "ls"); !regexp.MustCompile(`(?m)^across +up +\d+ .*local,m1,m2,m3$`).MatchString(r.stdout) {
		t.Errorf("ls on the coordinator:\n%s", r.stdout)
	}
	if _, out, _ := nstest.Run(t, c.Machine("m2").Command("/usr/local/bin/nsrun", "ls", "--json")); !strings.Contains(out, `"machine": "m2"`) || !strings.Contains(out, `"m3"`) {
		t.Errorf("ls --json on m2:\n%s", out)
	}
	// inspect on the coordinator reads every machine's part there.
	r = coord(t, c, "inspect", "across")
	if r.code != 0 || !regexp.MustCompile(`netns b20 \(machine m3\)\n  links:\n(.*\n)*? +eth0 +veth .* 10\.2\.0\.30/24`).MatchString(r.stdout) ||
		!regexp.MustCompile(`netns host \(machine m3\)\n  links:\n(.*\n)*? +brb +bridge`).MatchString(r.stdout) || strings.Contains(r.stdout, "made and read there") {
		t.Errorf("inspect: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// graph groups the nodes by machine, a link across machines one edge.
	if r := coord(t, c, "graph", "across"); r.code != 0 || !strings.Contains(r.stdout, `subgraph machine_m3 ["machine m3"]`) || !strings.Contains(r.stdout, `ns_r ---|"vxlan `) {
		t.Errorf("graph: %d\n%s%s", r.code, r.stdout, r.stderr)
	} else {
		checkMermaid(t, r.stdout)
	}
	// apply changes a lab on one machine only: refused, the lab as it was.
	if r := coord(t, c, "apply", recipe); r.code == 0 || !strings.Contains(r.stderr, "a lab across machines is made by `nsrun run`") {
		t.Errorf("apply of a lab across machines: %d\n%s", r.code, r.stderr)
	}
	// Nor may apply or a session change it from a recipe that does not
	// say where its objects are: they would be changed here.
	if r := coord(t, c, "apply", "--name", "across", write(t, "here.star", `netns("r")`+"\n")); r.code == 0 || !strings.Contains(r.stderr, `lab "across" is across machines (local, m1, m2, m3; this is local): apply changes a lab on one machine only`) {
		t.Errorf("apply of a recipe on one machine to a lab across machines: %d\n%s", r.code, r.stderr)
	}
	// check passes on every machine.
	for _, m := range c.Machines {
		if code, out, errs := nstest.Run(t, m.Command("/usr/local/bin/nsrun", "check", "across")); code != 0 {
			t.Errorf("check on %s: %d\n%s%s", m.Name, code, out, errs)
		}
	}
	if r := coord(t, c, "check", "across"); r.code != 0 || !strings.Contains(r.stdout, `machine m3: nsrun: lab "across" is as it recorded`) {
		t.Errorf("check on the coordinator: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// exec on the coordinator runs where the namespace is.
	if r := coord(t, c, "exec", "across", "b20", "--", "ip", "-br", "addr", "show", "eth0"); r.code != 0 || !strings.Contains(r.stdout, "10.2.0.30/24") {
		t.Errorf("exec across b20 (on m3): %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := coord(t, c, "exec", "across", "r", "--", "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("exec across r (on m1): exit %d, want the command's 7\n%s", r.code, r.stderr)
	}
	if r := coord(t, c, "down", "across"); r.code != 0 {
		t.Fatalf("down: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if code, _, errs := nstest.Run(t, c.Coordinator.Command("ip", "netns", "del", "b20")); code != 0 {
		t.Errorf("the coordinator's own b20: %s", errs) // untouched by the lab
	}
	nothingLeft(t, c, 10*time.Second)
}

func TestAcrossFailureRollsBackEveryMachine(t *testing.T) {
	c, recipe := across(t, acrossRecipe, cluster.Options{})
	r := coord(t, c, "run", recipe, "fail")
	if r.code != 1 || !strings.Contains(r.stderr, `"exit 3" in netns "b20" exited with status 3`) || !strings.Contains(r.stderr, "across.star:") {
		t.Fatalf("run: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	nothingLeft(t, c, 10*time.Second)
}

func TestAcrossCoordinatorKilled(t *testing.T) {
	c, recipe := across(t, acrossRecipe, cluster.Options{})
	for _, after := range []time.Duration{300 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond} {
		cmd := c.Coordinator.Command("/usr/local/bin/nsrun", "run", recipe, "sleep")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(after)
		// nsenter's child is the coordinator: kill it, as kill -9 would.
		exec.Command("pkill", "-9", "-f", "^/usr/local/bin/nsrun run "+recipe).Run()
		cmd.Wait()
		if r := coord(t, c, "recover"); r.code != 0 {
			t.Fatalf("recover after %s: %d\n%s%s", after, r.code, r.stdout, r.stderr)
		}
		nothingLeft(t, c, 20*time.Second)
	}
}

func TestAcrossCoordinatorGoneForGood(t *testing.T) {
	c, recipe := across(t, acrossRecipe, cluster.Options{})
	cmd := c.Coordinator.Command("/usr/local/bin/nsrun", "run", "--lease", "3s", recipe, "sleep")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	exec.Command("pkill", "-9", "-f", "^/usr/local/bin/nsrun run --lease 3s "+recipe).Run()
	exec.Command("pkill", "-9", "-f", "^ssh -F "+c.SSHConfig+" .* nsrun part").Run() // its connections die with it
	cmd.Wait()
	// No one recovers: each machine's part rolls itself back.
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range c.Machines {
		for len(leftOn(t, m)) > 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if left := leftOn(t, m); len(left) > 0 {
			t.Errorf("machine %s keeps %v after its coordinator died", m.Name, left)
		}
	}
	coord(t, c, "recover") // the coordinator's own part, and its record
	nothingLeft(t, c, 10*time.Second)
}

func TestAcrossCutOff(t *testing.T) {
	c, recipe := across(t, acrossRecipe, cluster.Options{})
	cmd := c.Coordinator.Command("/usr/local/bin/nsrun", "run", "--lease", "3s", recipe, "sleep")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m3 := c.Machine("m3")
	// Cut m3 off once its part is built (the recipe then sleeps 8 s).
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, out, _ := nstest.Run(t, m3.Command("ip", "netns", "list"))
		if strings.Contains(out, "b20") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if err := m3.Link(false); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("the run succeeded with m3 cut off:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `machine "m3"`) {
		t.Errorf("the run's error does not name m3:\n%s", stderr.String())
	}
	// m3 rolled its part back by itself, its lease run out.
	deadline = time.Now().Add(20 * time.Second)
	for len(leftOn(t, m3)) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if err := m3.Link(true); err != nil {
		t.Fatal(err)
	}
	coord(t, c, "recover") // the coordinator's record of m3's part, if the run could not undo it
	coord(t, c, "down", "across")
	nothingLeft(t, c, 20*time.Second)
}

func TestAcrossBadMachines(t *testing.T) {
	c, recipe := across(t, acrossRecipe, cluster.Options{Without: []string{"m2"}})
	check := func(what, want string, args ...string) {
		t.Helper()
		r := coord(t, c, append([]string{"run"}, args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: %d, want 2 and %q:\n%s%s", what, r.code, want, r.stdout, r.stderr)
		}
		nothingLeft(t, c, 10*time.Second)
	}
	check("a machine without nsrun", `across.star:4:13: machine "m2" (m2): nsrun is not installed there`, recipe)

	unreachable := write(t, "far.star", strings.ReplaceAll(`m9 = machine("m9", ssh = "root@10.250.0.99", ssh_config = CONFIG)
netns("x", on = m9)
`, "CONFIG", fmt.Sprintf("%q", c.SSHConfig)))
	check("an unreachable machine", `far.star:1:13: machine "m9" (root@10.250.0.99): ssh:`, unreachable)

	one := write(t, "one.star", strings.ReplaceAll(`m1 = machine("m1", ssh = "m1", ssh_config = CONFIG)
a, b = netns("a"), netns("b", on = m1)
veth("x", "y", netns = a, peer_netns = b)
`, "CONFIG", fmt.Sprintf("%q", c.SSHConfig)))
	// A VNI the lab's link would take (its plan says which), already a
	// VXLAN's of m1's.
	var entries []planEntry
	if err := json.Unmarshal([]byte(plan(t, "--json", one).stdout), &entries); err != nil {
		t.Fatal(err)
	}
	vni := 0
	for _, e := range entries {
		if e.Op == "link" && e.On == "m1" {
			vni = e.VNI
		}
	}
	if vni == 0 {
		t.Fatalf("the plan gives no VNI of the link on m1: %+v", entries)
	}
	m1 := c.Machine("m1")
	if code, _, errs := nstest.Run(t, m1.Command("ip", "link", "add", "vx-own", "type", "vxlan", "id", fmt.Sprint(vni), "dstport", "4789")); code != 0 {
		t.Fatal(errs)
	}
	r := coord(t, c, "run", one)
	if r.code == 0 || !strings.Contains(r.stderr, fmt.Sprintf("one.star:3:5: vxlan \"y\" in netns \"b\": VNI %d is already used by machine \"m1\"'s vxlan \"vx-own\"", vni)) {
		t.Errorf("a VNI clash: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	nstest.Run(t, m1.Command("ip", "link", "del", "vx-own"))
	nothingLeft(t, c, 10*time.Second)

	c.BadHostKey("m1")
	check("a host key that does not match", `one.star:1:13: machine "m1" (m1): ssh: `, one)
}

// servicesRecipe runs software on one machine and observes it from the
// recipe on every machine: a process started on m2 (its pid and log the
// same everywhere), a capture there, a DHCP server there whose client is
// on m1, a wait_until whose deadline the coordinator keeps.
const servicesRecipe = `
m1 = machine("m1", ssh = "m1", ssh_config = CONFIG)
m2 = machine("m2", ssh = "m2", ssh_config = CONFIG)
a = netns("a", on = m1)
b = netns("b", on = m2)
ea, eb = veth("eth0", "eth0", netns = a, peer_netns = b)
ea.up()
eb.addr("10.9.0.2/24").up()
p = spawn_in(b, "echo serving; exec sleep 60", name = "svc", ready = "log:serving")
print("pid %s" % ("set" if p.pid > 0 else "unset"))
print("log %r" % p.log().strip())
wait_until(lambda: "serving" in p.log(), timeout = "5s", what = "the log")
dhcp_server(b, eb, range = ("10.9.0.100", "10.9.0.110"))
lease = dhcp_client(ea)
print("lease %s" % lease.addr)
c = capture(b, eb, filter = "icmp")
reach(a, "10.9.0.2", count = 3, interval = "50ms")
n = c.stop()
print("icmp %s" % ("seen" if n["icmp"] >= 6 else "missed: %d" % n["icmp"]))
p.stop()
if "slow" in argv:
    wait_until(lambda: False, timeout = "1s", interval = "100ms", what = "never")
`

func TestAcrossServices(t *testing.T) {
	c, recipe := across(t, servicesRecipe, cluster.Options{Machines: 2})
	r := coord(t, c, "run", "--rm", recipe)
	for _, want := range []string{"pid set", "log \"serving\"", "lease 10.9.0.100/24", "icmp seen"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no %q in the run's output", want)
		}
	}
	// --rm: each part removes itself when the lab is committed (no
	// second connection to tear it down).
	for _, m := range []string{"m1", "m2"} {
		if !regexp.MustCompile(`machine "` + m + `": \d+ changes made, \d+ undone: nothing left`).MatchString(r.stderr) {
			t.Errorf("no word that %s's part removed itself", m)
		}
	}
	if r.code != 0 || t.Failed() {
		t.Fatalf("run: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	nothingLeft(t, c, 10*time.Second)
	// A wait that times out does so on every machine at once: the run
	// fails at the wait_until line, and every part rolls back.
	r = coord(t, c, "run", recipe, "slow")
	if r.code != 1 || !strings.Contains(r.stderr, "never: not true after") || !strings.Contains(r.stderr, "across.star:") {
		t.Fatalf("run slow: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	nothingLeft(t, c, 10*time.Second)
}
