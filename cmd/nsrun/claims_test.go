package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/store"
)

// claimOwner returns the lab holding a claim ("netns:NAME", "link:NAME"),
// or "".
func claimOwner(claim string) string {
	return store.ClaimOwner(nstest.StateDir, claim)
}

// Issue 12, item 6: names computed from exec_in's output, which the
// preflight makes up, are claimed by the real run as it makes them: a
// namespace and a host link so named are the lab's claims while it is up,
// and a name another lab has claimed (and not made yet) is not taken: the
// run fails, naming that lab, at the line that would have made it.
func TestObservedNamesAreClaimed(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	dyn := write(t, "dyn.star", `name = exec_in(host(), ["echo", argv[0]]).stdout.strip()
n = netns(name)
veth(name + "h", "eth0", peer_netns = n)
bridge(exec_in(host(), ["echo", argv[0] + "br"]).stdout.strip())
`)
	if r := nsrun(t, "-q", dyn, "dyn6"); r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	for _, c := range []string{"netns:dyn6", "link:dyn6h", "link:dyn6br"} {
		if got := claimOwner(c); got != "dyn" {
			t.Errorf("claim %s is held by %q, want lab dyn", c, got)
		}
	}
	if lab, _ := os.ReadFile(filepath.Join(nstest.StateDir, "dyn", "lab.json")); !strings.Contains(string(lab), `"netns:dyn6"`) || !strings.Contains(string(lab), `"link:dyn6br"`) {
		t.Errorf("lab.json does not record the claims:\n%s", lab)
	}
	if r := nsrun(t, "down", "dyn"); r.code != 0 {
		t.Fatalf("down: %+v", r)
	}
	if got := claimOwner("netns:dyn6"); got != "" {
		t.Errorf("claim netns:dyn6 outlived its lab: held by %q", got)
	}

	// Lab first claims netns dyn7 and waits before making it; lab dyn,
	// computing the same name, must not take it meanwhile.
	gate := filepath.Join(t.TempDir(), "go")
	first := write(t, "first.star", `exec_in(host(), ["sh", "-c", "while [ ! -e `+gate+` ]; do sleep 0.01; done"])
netns("dyn7")
`)
	ctx, cancel := context.WithTimeout(context.Background(), concLimit)
	defer cancel()
	bg := startNsrun(t, ctx, "-q", first)
	for i := 0; claimOwner("netns:dyn7") != "first"; i++ {
		if i > 2000 {
			t.Fatal("lab first never claimed netns dyn7")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := nsrun(t, dyn, "dyn7")
	if r.code != 1 || !strings.Contains(r.stderr, `netns "dyn7" is taken by lab "first"`) || !strings.Contains(r.stderr, "dyn.star:2:10") {
		t.Errorf("the second lab: %+v", r)
	}
	if r := nsrun(t, "ls"); strings.Contains(r.stdout, "dyn ") {
		t.Errorf("the failed lab is listed:\n%s", r.stdout)
	}
	os.WriteFile(gate, nil, 0o644)
	if r, err := bg.wait(); err != nil || r.code != 0 {
		t.Errorf("lab first: %+v, %v", r, err)
	}
	if r := nsrun(t, "down", "first"); r.code != 0 {
		t.Errorf("down first: %+v", r)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}

// A REPL session claims its global names as it makes them.
func TestSessionNamesAreClaimed(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	if r := nsrunStdin(t, "n = netns(\"rcl6\")\nbridge(\"rcl6br\")\n", nil, "repl", "--keep", "--name", "rcl"); r.code != 0 {
		t.Fatalf("repl: %+v", r)
	}
	for _, c := range []string{"netns:rcl6", "link:rcl6br"} {
		if got := claimOwner(c); got != "rcl" {
			t.Errorf("claim %s is held by %q, want lab rcl", c, got)
		}
	}
	if r := nsrun(t, "down", "rcl"); r.code != 0 {
		t.Errorf("down: %+v", r)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}
