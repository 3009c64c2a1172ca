package builtins_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// A node's private directories and files are what its processes see, and
// nothing of the machine's changes (nstest's snapshot lists /etc, /run,
// /var/lib and /var/log); rollback removes them from the lab's directory.
func TestNodeFiles(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	out, rt, err := runSrc(t, k, "n.star", `
r = netns("r1", private = ["/run/nsrun-test-d", "/var/lib/nsrun-test/deep"], private_owner = "nobody")
r.write_file("/etc/hostname", "r1\n", mode = 0o600)
r.write_file("/etc/nsrun-test/new.conf", "new\n")
r.write_file("/run/nsrun-test-d/in", "in private\n")
print(exec_in(r, "stat -c '%A %U %n' /run/nsrun-test-d /var/lib/nsrun-test/deep /etc/hostname").stdout)
print(exec_in(r, "cat /etc/hostname /etc/nsrun-test/new.conf /run/nsrun-test-d/in").stdout)
exec_in(r, "echo out > /var/lib/nsrun-test/deep/out; test -d /proc/self && test -e /dev/null")
print(r.read_file("/var/lib/nsrun-test/deep/out").strip(), r.read_file("/etc/nsrun-test/new.conf").strip())
r.write_file("/etc/hostname", "second\n")
print(exec_in(r, "cat /etc/hostname").stdout.strip())
other = netns("r2")
print(exec_in(other, "test -e /run/nsrun-test-d || test -e /etc/nsrun-test || echo unseen").stdout.strip())
`)
	defer rollback(t, rt)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	want := `drwxr-xr-x nobody /run/nsrun-test-d
drwxr-xr-x nobody /var/lib/nsrun-test/deep
-rw------- root /etc/hostname

r1
new
in private

out new
second
unseen
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	machine, _ := os.ReadFile("/etc/hostname")
	if strings.Contains(string(machine), "r1") || strings.Contains(string(machine), "second") {
		t.Errorf("the machine's /etc/hostname changed: %q", machine)
	}
	// A session's rollback of the second write puts the first back.
	undone, failed := rt.Rollback(rt.Journal.Len() - 2)
	if len(failed) > 0 || len(undone) != 2 {
		t.Fatalf("undone %v, failed %v", undone, failed)
	}
	node := filepath.Join(rt.Dir, "nodes", "r1", "files", "%2Fetc%2Fhostname")
	if b, err := os.ReadFile(node); err != nil || string(b) != "r1\n" {
		t.Errorf("after the rollback of the rewrite: %q, %v", b, err)
	}
	rollback(t, rt)
	left, _ := filepath.Glob(filepath.Join(rt.Dir, "nodes", "*", "*", "*"))
	if len(left) > 0 {
		t.Errorf("the rollback left %q", left)
	}
}

// A node's files are checked before any change: paths, owners, host().
func TestNodeFilesValidation(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`netns("a", private = ["run/x"])`, `"run/x" is not an absolute path`},
		{`netns("a", private = ["/run/../etc"])`, `is not a clean path`},
		{`netns("a", private = ["/"])`, `the root directory cannot be a node's own`},
		{`netns("a", private = ["/proc/x"])`, `is under /proc`},
		{`netns("a", private = ["/run/a,b"])`, `comma, colon or backslash`},
		{`netns("a", private = "/run/x")`, `want a list of absolute paths`},
		{`netns("a", private = ["/run/x", "/run/x/y"])`, `/run/x and /run/x/y overlap`},
		{`netns("a", private = ["/run/x"], private_owner = "no-such-user-here")`, `no user "no-such-user-here"`},
		{`netns("a").write_file("/sys/class/x", "")`, `is under /sys`},
		{`netns("a").write_file("etc/x", "")`, `not an absolute path`},
		{`netns("a").write_file("/etc/x", "", mode = 0o17777)`, `is not a file mode`},
		{`netns("a").write_file("/etc/x", "", owner = "no-such-user-here")`, `no user`},
		{`host().write_file("/etc/x", "")`, `host() shows the machine's own files`},
		{`host().read_file("/etc/x")`, `host() shows the machine's own files`},
	} {
		_, rt, err := runSrc(t, kernel.NewRecorder(), "v.star", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(engine.Backtrace(err), "v.star:1:") {
			t.Errorf("%s: err = %v, want %q at v.star:1", c.src, err, c.want)
		}
		rollback(t, rt)
	}
}
