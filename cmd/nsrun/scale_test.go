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
