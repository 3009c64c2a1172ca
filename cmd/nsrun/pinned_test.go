package main

import (
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// Issue 12, item 5: a namespace of the lab deleted by someone else during
// the run (here by the recipe itself, through ip netns del) fails the run,
// which is rolled back, instead of succeeding with the lab working in an
// unnamed namespace; so does a REPL input, which is not committed.
func TestNetnsDeletedDuringRun(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	r := nsrun(t, write(t, "gone.star", `n = netns("gone5")
netns("stay5")
veth("gone0", "eth0", peer_netns = n)
exec_in(host(), ["ip", "netns", "del", "gone5"])
print("after")
`))
	for _, want := range []string{`netns "gone5" was deleted during the run by someone else`, "rolled back"} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("run: exit %d, stderr lacks %q:\n%s", r.code, want, r.stderr)
		}
	}
	if r := nsrun(t, "ls"); strings.Contains(r.stdout, "gone") {
		t.Errorf("the lab is up:\n%s", r.stdout)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("the run left:\n%s\nwant:\n%s", after, before)
	}

	r = nsrunStdin(t, "a = netns(\"rgone5\")\nb = netns(\"rdel5\"); exec_in(host(), [\"ip\", \"netns\", \"del\", \"rdel5\"])\nprint(b.name)\n", nil, "repl")
	if !strings.Contains(r.stderr, `netns "rdel5" was deleted during the run by someone else`) || strings.Contains(r.stdout, "rdel5") {
		t.Errorf("repl: %+v", r)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("the session left:\n%s\nwant:\n%s", after, before)
	}
}
