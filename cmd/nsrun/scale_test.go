package main

import (
	"bytes"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// Issue 6, target 5: a lab of 1,100 hosts (more than a bridge holds) built
// with the standard library's lan(), checked from a sample of hosts, torn
// down with nothing left (nstest checks), nsrun's peak memory under 100 MB.
func TestThousandHosts(t *testing.T) {
	nstest.Kernel(t)
	if testing.Short() {
		t.Skip("builds 1,100 namespaces; -short skips it")
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(nsrunBin, "--rm", "../../bench/thousand.star")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s%s", err, out.String(), errb.String())
	}
	if want := "1100 hosts on 3 bridges; 10 sampled hosts reach across the LAN\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	if rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss; rss > 100<<10 {
		t.Errorf("peak memory %d kB, want under 100 MB", rss)
	} else {
		t.Logf("peak memory %d kB", rss)
	}
}

// A bridge's 1,024th port is refused while planning, before any change,
// with the limit and the way around it.
func TestBridgePortLimit(t *testing.T) {
	nstest.Kernel(t)
	src := `br = bridge("br-full").up()
s = netns("full-sw")
for i in range(1024):
    a, b = veth("p%d" % i, "q%d" % i, peer_netns = s)
    a.master(br)
`
	r := nsrun(t, write(t, "full.star", src))
	if r.code != 2 || !strings.Contains(r.stderr, `bridge "br-full" cannot take another port: a Linux bridge holds at most 1023 ports (the standard library's lan() spreads more hosts over several bridges)`) ||
		!strings.Contains(r.stderr, "full.star:5:13") || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("1024 ports: %+v", r)
	}
}

// One segment of thousands of hosts loses flooded ARP: lan() refuses more
// than max_hosts while planning, pointing at the routed way; and the routed
// way (bench/routed.star) builds, reaches across its router and tears down
// with nothing left.
func TestLargeLabs(t *testing.T) {
	nstest.Kernel(t)
	big := write(t, "big.star", `load("@std//lan.star", "lan")`+"\n"+
		`lan("br-big", {"b%d" % i: "10.%d.%d.%d/8" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(2001)}, ipv6 = False)`+"\n")
	r := nsrun(t, "--rm", big)
	if r.code == 0 || !strings.Contains(r.stderr, "lan: 2001 hosts on one segment (at most 2000)") || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("a lan() of 2,001 hosts: %+v", r)
	}
	r = nsrun(t, "--rm", "../../bench/routed.star", "3", "40")
	if r.code != 0 || r.stdout != "120 hosts in 3 segments\n" {
		t.Errorf("bench/routed.star 3 40: %+v", r)
	}
}
