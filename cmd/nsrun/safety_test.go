package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// Regression tests for review findings fixed in nsrun. Each fails if its
// fix is reverted.

// netnsInode is the inode of the namespace pinned as name, or 0 if there is
// none (yet: the pin is a plain file until the namespace is mounted on it).
func netnsInode(t *testing.T, name string) uint64 {
	t.Helper()
	path := filepath.Join(nstest.NetnsDir, name)
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		return 0
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// S1: a bridge of the machine's (host().link) is refused as the master of a
// lab link: joining it would change its ports and its MAC.
func TestSafetyForeignBridge(t *testing.T) {
	nstest.Kernel(t)
	nstest.Ip(t, "", "link", "add", "userbr", "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "userbr").Run() })
	nstest.Ip(t, "", "link", "set", "userbr", "up")
	state := func() string {
		return dkStable(nstest.Ip(t, "", "-d", "-j", "link", "show", "userbr") + nstest.Ip(t, "", "-j", "link", "show", "master", "userbr"))
	}
	before := state()
	path := write(t, "s1.star", `n = netns("s1")
a, b = veth("s1a", "s1b", peer_netns = n)
a.master(host().link("userbr"))
`)
	r := nsrunWithin(t, path)
	if r.code == 0 || !strings.Contains(r.stderr, `bridge: link "userbr" in netns "host" was not created by this lab`) {
		t.Errorf("exit %d, want a refusal naming userbr; stderr:\n%s", r.code, r.stderr)
	}
	if after := state(); after != before {
		t.Errorf("userbr changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// S2: in host(), a route never takes the machine's traffic: no default
// route (whatever its spelling: default, /0, or the halves /1 that together
// cover everything), nothing overlapping a route of the machine's; a route
// to a free prefix through a lab link is fine.
func TestSafetyHostRoutes(t *testing.T) {
	nstest.Kernel(t)
	// The machine's own link, with routes each case sets.
	nstest.Ip(t, "", "link", "add", "s2u0", "type", "veth", "peer", "name", "s2u1")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "s2u0").Run() })
	nstest.Ip(t, "", "link", "set", "s2u1", "up")
	nstest.Ip(t, "", "link", "set", "s2u0", "up")
	machines := map[string][][]string{
		// A /16 and a default route through it.
		"lan": {{"10.77.0.0/16", "dev", "s2u0"}, {"default", "via", "10.77.0.1", "dev", "s2u0"}},
		// Only a default route (a point-to-point uplink).
		"uplink": {{"default", "dev", "s2u0"}},
	}
	const never = "nsrun never changes the machine's own routing"
	for _, tc := range []struct {
		name, machine, route string
		want                 string // in stderr; "" if the route is allowed
	}{
		{"default", "lan", `route("default", dev = a)`, "a default route in the host namespace"},
		{"zero prefix", "lan", `route("0.0.0.0/0", dev = a)`, "a default route in the host namespace"},
		{"lower half beside a lan", "lan", `route("0.0.0.0/1", dev = a)`, "0.0.0.0/1 is too wide for the host namespace"},
		{"inside the machine's route", "lan", `route("10.77.1.0/24", dev = a)`, "overlaps the machine's route to 10.77.0.0/16"},
		{"around the machine's route", "lan", `route("10.0.0.0/8", dev = a)`, "overlaps the machine's route to 10.77.0.0/16"},
		{"through the machine's link", "lan", `route("10.79.0.0/16", dev = "s2u0")`, "must use dev= a link this lab created"},
		{"free prefix", "lan", `route("10.78.0.0/16", dev = a)`, ""},
		{"default beside an uplink", "uplink", `route("default", dev = a)`, "a default route in the host namespace"},
		// Half of everything is the machine's default route's traffic as
		// much as all of it is.
		{"lower half beside an uplink", "uplink", `route("0.0.0.0/1", dev = a)`, never},
		{"upper half beside a lan", "lan", `route("128.0.0.0/1", dev = a)`, never},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nstest.Ip(t, "", "route", "flush", "dev", "s2u0")
			for _, r := range machines[tc.machine] {
				nstest.Ip(t, "", append([]string{"route", "add"}, r...)...)
			}
			before := nstest.Snapshot(t)
			path := write(t, "s2.star", `n = netns("s2")
a, b = veth("s2a", "s2b", peer_netns = n)
a.up()
b.up()
host().`+tc.route+`
print(exec_in(host(), ["ip", "route"]).stdout)
`)
			r := nsrunWithin(t, "--rm", path)
			if tc.want == "" {
				if r.code != 0 || !strings.Contains(r.stdout, "10.78.0.0/16 dev s2a") {
					t.Errorf("exit %d, want 0 and the route in place; stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
				}
			} else if r.code == 0 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, never) {
				t.Errorf("exit %d, want a refusal saying %q; stdout (the host's routes during the run):\n%s\nstderr:\n%s", r.code, tc.want, r.stdout, r.stderr)
			}
			if after := nstest.Snapshot(t); after != before {
				t.Errorf("the machine differs:\n--- before\n%s\n--- after\n%s", before, after)
			}
		})
	}
}

// S3: nsfs hands a freed namespace's inode number out again. A lab's
// namespace deleted behind nsrun's back and replaced by a user's of the same
// name — with the same inode number if the kernel obliges — is not deleted
// by `nsrun down`.
func TestSafetyNetnsInodeReuse(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "s3.star", "netns(\"reuse\")\n")
	if r := nsrunWithin(t, path); r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	labDown := false
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", "reuse").Run()
		if !labDown {
			if r := nsrunWithin(t, "down", "s3"); r.code != 0 {
				t.Errorf("down after the user's namespace is gone: %+v", r)
			}
		}
	})
	ino := netnsInode(t, "reuse")
	nstest.Ip(t, "", "netns", "del", "reuse")
	user := takeInode(t, "reuse", ino)
	if user == ino {
		t.Logf("the user's namespace has the lab's old inode number %d", ino)
	} else {
		t.Logf("the kernel did not hand out inode %d again (the user's namespace has %d): a weaker test", ino, user)
	}
	r := nsrunWithin(t, "down", "s3")
	switch {
	case r.code == 0:
		labDown = true
	case r.code == 3 && strings.Contains(r.stderr, `"reuse"`):
	default:
		t.Errorf("down: exit %d, want 3 naming \"reuse\" (or 0); %+v", r.code, r)
	}
	if got := netnsInode(t, "reuse"); got != user {
		t.Errorf("down removed the user's namespace \"reuse\" (inode %d; now %d)", user, got)
	}
}

// takeInode makes a namespace pinned as name, trying to get inode number
// ino, which a namespace just deleted had, and returns the inode it got. The
// kernel hands out the lowest free number once it has cleaned the old
// namespace up (asynchronously): lower free numbers are taken by pads, held
// until t ends.
func takeInode(t *testing.T, name string, ino uint64) uint64 {
	t.Helper()
	var pads []string
	t.Cleanup(func() {
		for _, p := range pads {
			exec.Command("ip", "netns", "del", p).Run()
		}
	})
	pin := func(ns string) uint64 {
		nstest.Ip(t, "", "netns", "add", ns)
		return netnsInode(t, ns)
	}
	for try := 0; try < 200; try++ {
		pad := fmt.Sprintf("%s-pad%d", name, len(pads))
		got := pin(pad)
		if got < ino { // a lower free number: keep it taken
			pads = append(pads, pad)
			continue
		}
		nstest.Ip(t, "", "netns", "del", pad)
		if got == ino { // free, and now the lowest
			break
		}
		time.Sleep(5 * time.Millisecond) // not freed yet
	}
	for try := 0; ; try++ {
		if got := pin(name); got == ino || try == 200 {
			return got
		}
		nstest.Ip(t, "", "netns", "del", name)
		time.Sleep(5 * time.Millisecond)
	}
}

// S5: `nsrun down LAB` while LAB's run is still running is refused, and
// changes nothing; the run then finishes normally.
func TestSafetyDownWhileRunning(t *testing.T) {
	nstest.Kernel(t)
	gate := filepath.Join(t.TempDir(), "gate")
	path := write(t, "s5.star", `netns("busy")
exec_in(host(), ["sh", "-c", 'while [ ! -e "$1" ]; do sleep 0.05; done', "sh", argv[0]], timeout = "60s")
`)
	ctx, cancel := context.WithTimeout(context.Background(), concLimit)
	defer cancel()
	run := startNsrun(t, ctx, "--rm", path, gate)
	defer func() {
		os.WriteFile(gate, nil, 0o644)
		if r, err := run.wait(); err != nil || r.code != 0 {
			t.Errorf("the run: %v %+v", err, r)
		}
	}()
	for netnsInode(t, "busy") == 0 {
		if ctx.Err() != nil {
			t.Fatalf("netns busy never appeared: %s", run.err.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ino := netnsInode(t, "busy")
	r := nsrunWithin(t, "down", "s5")
	if r.code == 0 || !strings.Contains(r.stderr, "in use by a running nsrun") {
		t.Errorf("down of a running lab: %+v", r)
	}
	if got := netnsInode(t, "busy"); got != ino {
		t.Errorf("down removed the running lab's namespace")
	}
}

// C2: ns.route("default", dev=link) without via= adds "default dev LINK".
func TestSafetyDefaultRouteDevOnly(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "c2.star", `n = netns("c2")
a, b = veth("c2a", "c2b", peer_netns = n)
b.up()
n.route("default", dev = b)
`)
	if r := nsrunWithin(t, path); r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	if got := nstest.Ip(t, "c2", "route"); !strings.Contains(got, "default dev c2b") {
		t.Errorf("routes in c2: %q, want default dev c2b", got)
	}
	if r := nsrunWithin(t, "down", "c2"); r.code != 0 {
		t.Errorf("down: %+v", r)
	}
}

// S4: processes a spawned command leaves behind (its shell exited, its
// children now orphans in a process group nobody leads) end with the run.
func TestSafetyOrphanedChildrenEnd(t *testing.T) {
	nstest.Kernel(t)
	// The recipe waits for the shell to be gone, so that only the lab's
	// tag, not the shell's process group, can find the sleeps.
	path := write(t, "s4.star", `n = netns("s4")
p = spawn_in(n, "sleep 987 & sleep 986 & exit 0")
exec_in(n, "while kill -0 %d 2>/dev/null; do sleep 0.02; done" % p.pid, timeout = "20s")
print(exec_in(n, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null | grep -c '^sleep 98[67] $'", check = False).stdout)
`)
	r := nsrunWithin(t, "--rm", path)
	if r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	if strings.TrimSpace(r.stdout) != "2" {
		t.Errorf("the recipe saw %q sleeps while it ran, want 2 (the test proves nothing otherwise)", r.stdout)
	}
	if left := sleepers(); len(left) > 0 {
		t.Errorf("processes left after the run: %v", left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// sleepers lists the processes whose command line is exactly "sleep 987" or
// "sleep 986".
func sleepers() []int {
	return append(pgrep("sleep 987"), pgrep("sleep 986")...)
}
