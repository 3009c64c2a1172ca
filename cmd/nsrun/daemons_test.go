package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/proc"
)

// daemonRecipes are the walkthroughs that run real daemons.
var daemonRecipes = []string{"frr_ospf.star", "bird_bgp.star", "dnsmasq_dhcp.star"}

// daemonOf names, for each, a program it starts (the one the kill test
// waits for) and a global it defines (which a recipe that fails after it
// loads).
var daemonOf = map[string][2]string{
	"frr_ospf.star":     {"ospfd", "routers"},
	"bird_bgp.star":     {"bird", "routers"},
	"dnsmasq_dhcp.star": {"dnsmasq", "dnsmasq"},
}

// After each recipe that runs daemons — removed at its end (--rm), brought
// down (`nsrun down`), failed after its daemons started, and killed with
// SIGKILL while they run and then recovered — nothing is left: no process,
// socket, pid file, log or private directory, and nothing of the machine's
// changed (nstest's snapshot: the kernel's objects, the processes, and the
// files under /etc, /run, /var/lib and /var/log).
func TestDaemonRecipesLeaveNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("each recipe runs four times with its daemons; -short skips it")
	}
	for _, name := range daemonRecipes {
		recipe, _ := filepath.Abs(filepath.Join("../../recipes", name))
		lab := strings.TrimSuffix(name, ".star")
		t.Run(lab, func(t *testing.T) {
			nstest.Kernel(t)
			before, tmp := nstest.Snapshot(t), tmpFiles()
			same := func(how string) {
				t.Helper()
				if after := nstest.Snapshot(t); after != before {
					t.Errorf("%s left:\n%s\nwant:\n%s", how, after, before)
				}
				if after := tmpFiles(); after != tmp {
					t.Errorf("%s left in /tmp:\n%s\nwant:\n%s", how, after, tmp)
				}
			}
			if r := nsrun(t, "--rm", "-q", recipe); r.code != 0 {
				t.Fatalf("--rm: %+v", r)
			}
			same("--rm")

			if r := nsrun(t, "-q", recipe); r.code != 0 {
				t.Fatalf("run: %+v", r)
			}
			if r := nsrun(t, "down", lab); r.code != 0 {
				t.Errorf("down: %+v", r)
			}
			same("down")

			failing := write(t, "failing.star", "load(\""+recipe+"\", \""+daemonOf[name][1]+"\")\nfail(\"after the daemons started\")\n")
			if r := nsrun(t, "-q", "-L", filepath.Dir(recipe), failing); r.code != 1 || !strings.Contains(r.stderr, "after the daemons started") || !strings.Contains(r.stderr, "rolled back") {
				t.Errorf("failing: %+v", r)
			}
			same("a failure after the daemons started")

			cmd := exec.Command(nsrunBin, "-q", recipe)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(30 * time.Second); !running(daemonOf[name][0]); {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatalf("%s never started", daemonOf[name][0])
				}
				time.Sleep(50 * time.Millisecond)
			}
			syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			if r := nsrun(t, "ls"); r.code != 0 || !strings.Contains(r.stderr, "recovered") {
				t.Errorf("recovery: %+v", r)
			}
			same("SIGKILL with its daemons up, then recovery")
		})
	}
}

// tmpFiles lists /tmp but for what go test, the tests and nsrun's own
// tests make there at any time (this package's tests run beside others').
func tmpFiles() string {
	entries, _ := os.ReadDir("/tmp")
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "go-") || strings.HasPrefix(n, "Test") || strings.HasPrefix(n, "nsrun-") {
			continue
		}
		names = append(names, n)
	}
	return strings.Join(names, "\n")
}

// running reports whether a process of that name runs.
func running(name string) bool {
	for _, pid := range proc.Pids() {
		if proc.Comm(pid) == name && proc.Live(pid) {
			return true
		}
	}
	return false
}
