package main

import (
	"os"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

const prefixed = `
n = netns("node1")
a, b = veth("uplink-to-node1", "eth0", peer_netns = n)
br = bridge("br0").up()
a.master(br).up()
b.addr("10.77.0.2/24").up()
host().sysctl("net.ipv4.conf.uplink-to-node1.forwarding", "1")
print(n.name, a.name, br.name, link("host", "br0").name, ns("node1").name)
`

// With --prefix, one recipe is up twice: its namespaces are PREFIX-NAME,
// its host links PREFIX-NAME (past 15 bytes, cut and told apart by a
// hash), the recipe still writes and sees its short names, and each lab
// comes down whole.
func TestPrefix(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "pre.star", prefixed)
	if r := nsrun(t, "plan", "--prefix", "alpha", path); r.code != 0 || !strings.Contains(r.stdout, "ip netns add alpha-node1") || !strings.Contains(r.stdout, "ip link add alpha-br0 ") {
		t.Fatalf("plan --prefix: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, p := range []string{"alpha", "beta"} {
		r := nsrun(t, "--prefix", p, path)
		if r.code != 0 {
			t.Fatalf("--prefix %s: exit %d\n%s", p, r.code, r.stderr)
		}
		if want := "node1 uplink-to-node1 br0 br0 node1\n"; r.stdout != want {
			t.Errorf("--prefix %s printed %q, want %q", p, r.stdout, want)
		}
	}
	ls := nsrun(t, "ls")
	if !strings.Contains(ls.stdout, "alpha-pre") || !strings.Contains(ls.stdout, "beta-pre") {
		t.Errorf("ls:\n%s", ls.stdout)
	}
	links := nstest.Ip(t, "", "-br", "link")
	for _, want := range []string{"alpha-br0", "beta-br0", "alpha-uplin", "beta-uplink"} {
		if !strings.Contains(links, want) {
			t.Errorf("no host link %s:\n%s", want, links)
		}
	}
	for _, f := range strings.Fields(links) {
		if name := strings.Split(f, "@")[0]; strings.HasPrefix(name, "alpha-") && len(name) > 15 {
			t.Errorf("host link %q is longer than 15 bytes", name)
		}
	}
	for _, ns := range []string{"alpha-node1", "beta-node1"} {
		if got := nstest.Ip(t, ns, "-br", "addr", "show", "eth0"); !strings.Contains(got, "10.77.0.2/24") {
			t.Errorf("%s eth0: %s", ns, got)
		}
	}
	for _, lab := range []string{"alpha-pre", "beta-pre"} {
		if r := nsrun(t, "down", lab); r.code != 0 {
			t.Errorf("down %s: %d %s", lab, r.code, r.stderr)
		}
	}
	if left, _ := os.ReadDir(nstest.NetnsDir); len(left) > 0 {
		t.Errorf("left in %s: %v", nstest.NetnsDir, left)
	}
	if got := nstest.Ip(t, "", "-br", "link"); strings.Contains(got, "alpha") || strings.Contains(got, "beta") {
		t.Errorf("host links left:\n%s", got)
	}
}
