package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// A containerlab file of linux and bridge nodes runs from its own file as
// the lab its name: says: nodes as namespaces, links as veth pairs (MTU
// and MAC as the file says), exec lines run in their node with its env,
// what is left out said once; plan and down work on it, and nothing is
// left.
func TestContainerlabFile(t *testing.T) {
	nstest.Kernel(t)
	const file = "testdata/routed-lan.clab.yml"
	if r := nsrun(t, "plan", file); r.code != 0 || !strings.Contains(r.stdout, "ip -n sw link add sw ") || !strings.Contains(r.stdout, "mtu 9000 type veth peer name eth1") {
		t.Fatalf("plan: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r := nsrun(t, file)
	if r.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"routed-lan.clab.yml:3: mgmt: skipped", "routed-lan.clab.yml:10: image: not used"} {
		if strings.Count(r.stderr, want) != 1 {
			t.Errorf("stderr says %q %d times, want once:\n%s", want, strings.Count(r.stderr, want), r.stderr)
		}
	}
	if ls := nsrun(t, "ls"); !strings.Contains(ls.stdout, "routed-lan") {
		t.Errorf("ls:\n%s", ls.stdout)
	}
	if got := nstest.Ip(t, "srv2", "link", "show", "eth1"); !strings.Contains(got, "02:00:00:00:02:12") {
		t.Errorf("srv2 eth1:\n%s", got)
	}
	if got := nstest.Ip(t, "client", "link", "show", "eth1"); !strings.Contains(got, "mtu 9000") {
		t.Errorf("client eth1:\n%s", got)
	}
	if got := nstest.Ip(t, "sw", "link", "show", "master", "sw"); !strings.Contains(got, " r@") || !strings.Contains(got, " s1@") || !strings.Contains(got, " s2@") {
		t.Errorf("bridge sw's ports:\n%s", got)
	}
	if got := nstest.Ip(t, "client", "route"); !strings.Contains(got, "default via 192.168.1.1") {
		t.Errorf("client's routes (its exec with env GW):\n%s", got)
	}
	if out, err := exec.Command("ip", "netns", "exec", "client", "ping", "-c1", "-W2", "192.168.2.11").CombinedOutput(); err != nil {
		t.Errorf("client cannot reach srv1 across the router: %v\n%s", err, out)
	}
	if r := nsrun(t, "exec", "routed-lan", "srv1", "--", "cat", "/run/srv1/state"); r.code != 0 || r.stdout != "up\n" {
		t.Errorf("srv1's private /run/srv1/state: %+v", r)
	}
	if _, err := os.Stat("/run/srv1"); err == nil {
		t.Errorf("/run/srv1 is on the machine's filesystem")
	}
	if r := nsrun(t, "graph", "routed-lan"); r.code != 0 || !strings.Contains(r.stdout, "ns_srv2") {
		t.Errorf("graph: %+v", r)
	}
	if r := nsrun(t, "down", "routed-lan"); r.code != 0 {
		t.Fatalf("down: exit %d\n%s", r.code, r.stderr)
	}
	if left, _ := os.ReadDir(nstest.NetnsDir); len(left) > 0 {
		t.Errorf("left in %s: %v", nstest.NetnsDir, left)
	}
}

// A containerlab file that fails halfway (an exec line) is rolled back,
// the error naming the file's line; one with a kind nsrun does not run is
// refused, with its line, before anything is made.
func TestContainerlabFileFails(t *testing.T) {
	nstest.Kernel(t)
	bad := write(t, "bad.clab.yml", `name: bad
topology:
  nodes:
    a:
      kind: linux
      exec:
        - ip addr add 10.0.0.1/24 dev eth1
        - ip route add 10.9.0.0/16 via 10.7.7.7
    b: {kind: linux}
  links:
    - endpoints: ["a:eth1", "b:eth1"]
`)
	r := nsrun(t, bad)
	if r.code != 1 || !strings.Contains(r.stderr, "bad.clab.yml:8:") {
		t.Errorf("exit %d, want 1 and the exec's line:\n%s", r.code, r.stderr)
	}
	refused := write(t, "srl.clab.yml", "name: srl\ntopology:\n  nodes:\n    a:\n      kind: nokia_srlinux\n      image: ghcr.io/nokia/srlinux\n")
	r = nsrun(t, refused)
	if r.code == 0 || !strings.Contains(r.stderr, "srl.clab.yml:5: node a: kind \"nokia_srlinux\" is not one nsrun runs") {
		t.Errorf("exit %d:\n%s", r.code, r.stderr)
	}
	if left, _ := os.ReadDir(nstest.NetnsDir); len(left) > 0 {
		t.Errorf("left in %s: %v", nstest.NetnsDir, left)
	}
}

// apply of an edited containerlab file adds a node and its link and runs
// only the new node's exec lines (the others, once=True, ran already);
// applying the old file takes them away again.
func TestContainerlabApply(t *testing.T) {
	nstest.Kernel(t)
	v1, err := os.ReadFile("testdata/routed-lan.clab.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p1 := writeIn(t, dir, "v1.clab.yml", string(v1))
	p2 := writeIn(t, dir, "v2.clab.yml", strings.Replace(string(v1), "  links:\n", `    srv3:
      exec:
        - ip addr add 192.168.2.13/24 dev eth1
  links:
    - endpoints: ["srv3:eth1", "sw:s3"]
`, 1))
	if r := nsrun(t, p1); r.code != 0 {
		t.Fatalf("run: %d\n%s", r.code, r.stderr)
	}
	defer nsrun(t, "down", "routed-lan")
	if r := nsrun(t, "apply", p2); r.code != 0 {
		t.Fatalf("apply v2: %d\n%s", r.code, r.stderr)
	}
	if out, err := exec.Command("ip", "netns", "exec", "srv3", "ping", "-c1", "-W2", "192.168.2.11").CombinedOutput(); err != nil {
		t.Errorf("srv3 cannot reach srv1: %v\n%s", err, out)
	}
	if r := nsrun(t, "apply", p1); r.code != 0 {
		t.Fatalf("apply v1: %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(nstest.NetnsDir + "/srv3"); err == nil {
		t.Errorf("srv3 is still there after applying v1")
	}
}
