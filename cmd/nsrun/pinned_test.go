package main

import (
	"os"
	"os/exec"
	"path/filepath"
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

// An apply whose recipe changes nothing, or only another namespace, still
// finds a namespace of the lab that someone deleted, or replaced, while it
// ran (the review of the apply's narrowed check): it fails as a run does.
func TestNetnsDeletedDuringApply(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "pin.star")
	v1 := "netns(\"pa5\")\nnetns(\"pb5\")\n"
	for _, c := range []struct{ name, extra string }{
		{"deleted", `exec_in(host(), ["ip", "netns", "del", "pb5"])`},
		{"replaced", `exec_in(host(), ["sh", "-c", "ip netns del pb5 && ip netns add pb5"])` + "\nnetns(\"pc5\")"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(v1), 0o644); err != nil {
				t.Fatal(err)
			}
			if r := nsrun(t, path); r.code != 0 {
				t.Fatalf("run: %+v", r)
			}
			if err := os.WriteFile(path, []byte(v1+c.extra+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			r := nsrun(t, "apply", path)
			if r.code != 1 || !strings.Contains(r.stderr, `netns "pb5" was`) {
				t.Errorf("apply: exit %d, want 1 and netns \"pb5\" named:\n%s", r.code, r.stderr)
			}
			exec.Command("ip", "netns", "del", "pb5").Run() // the stranger's, if it made one
			if r := nsrun(t, "down", "pin"); r.code != 0 {
				t.Errorf("down: %+v", r)
			}
			if after := nstest.Snapshot(t); after != before {
				t.Errorf("left:\n%s\nwant:\n%s", after, before)
			}
		})
	}
}
