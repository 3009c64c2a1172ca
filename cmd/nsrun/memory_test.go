package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// Issue 12, item 3: a recipe that makes a gigabyte string ("x" * 10**9;
// Starlark has no **) after it looked at the machine (so that the preflight
// cannot stop it) is stopped by the run, at that line or soon after, with
// the limit named, and rolled back, leaving nothing. A recipe whose memory
// grows is stopped while planning, with nothing changed. --max-memory sets
// the limit.
func TestRecipeMemoryLimit(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)

	r := nsrun(t, write(t, "memrun.star", `n = netns("memr")
veth("memr0", "eth0", peer_netns = n)
exec_in(host(), "true")  # what follows is not planned
s = "x" * 1000000000
for i in range(3000000): pass  # (the whole process may stall while the string's pages are first touched)
netns("memr2")
`))
	if r.code != 1 || !regexp.MustCompile(`memrun.star:[45]:\d+: in <toplevel>`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, "the recipe uses more than 512 MiB of memory (--max-memory)") ||
		!strings.Contains(r.stderr, "rolled back") {
		t.Errorf("run: %+v", r)
	}

	r = nsrun(t, "--max-memory", "64", write(t, "memloop.star", `netns("meml")
l = []
for i in range(1000):
    l.append("x" * 1000000)
`))
	if r.code != 2 || !regexp.MustCompile(`memloop.star:[34]:\d+: in <toplevel>`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, "the recipe uses more than 64 MiB of memory (--max-memory)") || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("--max-memory 64: %+v", r)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}
