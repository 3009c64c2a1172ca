package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
)

var nsrunBin string

// The end-to-end tests run the nsrun binary, built once, as a user would,
// inside the test's own sandbox.
func TestMain(m *testing.M) { nstest.MainWith(m, nstest.Binary(".", &nsrunBin)) }

type result struct {
	code           int
	stdout, stderr string
}

func nsrun(t *testing.T, args ...string) result {
	t.Helper()
	return nsrunStdin(t, "", nil, args...)
}

func write(t testing.TB, name, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"help", "run"}, {"run", "--help"}, {"down", "--help"}, {"ls", "--help"}} {
		if r := nsrun(t, args...); r.code != 0 || r.stdout == "" {
			t.Errorf("nsrun %v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := nsrun(t); r.code != 2 {
		t.Errorf("nsrun with no arguments: exit %d, want 2", r.code)
	}
	if r := nsrun(t, "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %+v", r)
	}
}

// Two runs of the same recipe in --sandbox print the same, MACs included.
func TestSandboxDeterministic(t *testing.T) {
	nstest.Kernel(t)
	first := nsrun(t, "--sandbox", "--rm", "testdata/blue.star")
	second := nsrun(t, "--sandbox", "--rm", "testdata/blue.star")
	if first.code != 0 {
		t.Fatalf("exit %d: %s", first.code, first.stderr)
	}
	if first.stdout != second.stdout || len(strings.Fields(first.stdout)) != 3 {
		t.Errorf("runs differ or print no MACs:\n%s\n%s", first.stdout, second.stdout)
	}
}

// Without --sandbox (inside the test's sandbox), a run leaves a lab that ls
// lists and down removes completely.
func TestLabLifecycle(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	if r := nsrun(t, "testdata/blue.star"); r.code != 0 || !strings.Contains(r.stderr, `lab "blue" is up`) {
		t.Fatalf("run: %+v", r)
	}
	if got := nstest.Ip(t, "blue", "-br", "addr", "show", "veth1"); !strings.Contains(got, "192.168.10.21/24") {
		t.Errorf("veth1 in blue: %q", got)
	}
	if r := nsrun(t, "testdata/blue.star"); r.code != 2 || !strings.Contains(r.stderr, `a namespace named "blue" already exists`) || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("second run of the same recipe: %+v", r)
	}
	if r := nsrun(t, "--name", "blue", write(t, "other.star", "netns(\"other\")\n")); r.code != 2 || !strings.Contains(r.stderr, `lab "blue" is already up`) {
		t.Errorf("another recipe as lab blue: %+v", r)
	}
	if r := nsrun(t, "ls"); !strings.Contains(r.stdout, "blue") {
		t.Errorf("ls: %+v", r)
	}
	if r := nsrun(t, "down", "blue"); r.code != 0 {
		t.Fatalf("down: %+v", r)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("down left:\n%s\nwant:\n%s", after, before)
	}
	if r := nsrun(t, "down", "blue"); r.code != 2 || !strings.Contains(r.stderr, `no lab "blue"`) {
		t.Errorf("down of a lab that is gone: %+v", r)
	}
}

// fail() on the last line: exit 1, the file:line, nothing changed (the
// preflight finds it before the kernel is touched).
func TestFailRollsBack(t *testing.T) {
	nstest.Kernel(t)
	src, _ := os.ReadFile("testdata/blue.star")
	path := write(t, "boom.star", string(src)+"fail(\"boom\")\n")
	before := nstest.Snapshot(t)
	r := nsrun(t, path)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1: %s", r.code, r.stderr)
	}
	for _, want := range []string{"boom.star:12:5: in <toplevel>", "Error in fail: boom", "nothing was changed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s", after)
	}
}

// A name made meanwhile by a command the recipe ran (which the plan could
// not know) is found before the link is made, named at its line, and the
// run rolled back; what the command made is not the lab's and stays.
func TestNameTakenMeanwhile(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "late.star", `n = netns("late")
exec_in(host(), "ip link add late0 type bridge")
veth("late0", "eth0", peer_netns = n)
`)
	before := nstest.Snapshot(t)
	r := nsrun(t, "-q", path)
	if got := nstest.Ip(t, "", "-d", "link", "show", "late0"); strings.Contains(got, "nsrun") {
		t.Errorf("late0 was changed: %s", got)
	}
	nstest.Ip(t, "", "link", "del", "late0")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1: %s", r.code, r.stderr)
	}
	for _, want := range []string{"late.star:3:5: in <toplevel>", `Error in veth: veth: a link named "late0" already exists in netns "host"`} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}

// --keep-on-error leaves the partial lab, recorded, for down to remove.
func TestKeepOnError(t *testing.T) {
	nstest.Kernel(t)
	// exec_in looks at the machine: what follows is not known in advance.
	path := write(t, "half.star", "netns(\"half\")\nexec_in(host(), \"true\")\nfail(\"stop\")\n")
	if r := nsrun(t, "--keep-on-error", path); r.code != 1 || !strings.Contains(r.stderr, "kept the failed lab") {
		t.Fatalf("%+v", r)
	}
	if got := nstest.Ip(t, "", "netns", "list"); !strings.Contains(got, "half") {
		t.Errorf("netns half was not kept: %q", got)
	}
	if r := nsrun(t, "down", "half"); r.code != 0 {
		t.Errorf("down: %+v", r)
	}
	// In a kept sandbox, the failed lab keeps the sandbox.
	if r := nsrun(t, "run", "--sandbox", "--keep", "--keep-on-error", path); r.code != 1 || !strings.Contains(r.stderr, "kept the failed lab") {
		t.Fatalf("--sandbox --keep --keep-on-error: %+v", r)
	}
	var labs []struct {
		Lab, State, Sandbox string
		Holder              int
	}
	if r := nsrun(t, "ls", "--json"); json.Unmarshal([]byte(r.stdout), &labs) != nil || len(labs) != 1 || labs[0].Lab != "half" || labs[0].State != "kept" || labs[0].Holder == 0 {
		t.Errorf("ls --json: the failed lab in its kept sandbox: %+v", r)
	}
	if r := nsrun(t, "down", "half"); r.code != 0 || !strings.Contains(r.stdout, `removed lab "half"`) {
		t.Errorf("down of the failed lab in its sandbox: %+v", r)
	}
	waitNoHolders(t, "/run/nsrun/.sandbox")
}

func TestStaticErrors(t *testing.T) {
	nstest.Kernel(t)
	if r := nsrun(t, write(t, "syn.star", "netns(\"a\"\n")); r.code != 2 || !strings.Contains(r.stderr, "syn.star:2:1: got end of file") {
		t.Errorf("syntax error: %+v", r)
	}
	if r := nsrun(t, write(t, "undef.star", "netns(\"a\")\nnope()\n")); r.code != 2 || !strings.Contains(r.stderr, "undef.star:2:1: undefined: nope") {
		t.Errorf("undefined name: %+v", r)
	}
	if r := nsrun(t, "missing.star"); r.code != 2 || !strings.Contains(r.stderr, "missing.star") {
		t.Errorf("missing recipe: %+v", r)
	}
	if r := nsrun(t, "--name", "../x", "testdata/blue.star"); r.code != 2 || !strings.Contains(r.stderr, "invalid lab name") {
		t.Errorf("bad lab name: %+v", r)
	}
}

// load() finds @std// and files relative to the loading file; an error in a
// library shows the library's line.
func TestLoad(t *testing.T) {
	nstest.Kernel(t)
	r := nsrun(t, "--sandbox", "testdata/lib_user.star")
	if r.code != 0 || r.stdout != "h1 h1\nh2 h2\nh3 h3\n" {
		t.Errorf("lib_user: %+v", r)
	}
	r = nsrun(t, "--sandbox", "testdata/lib_error.star")
	if r.code != 2 || !strings.Contains(r.stderr, "helpers/names.star:5:14: in broken") || !strings.Contains(r.stderr, "lib_error.star:4:7: in <toplevel>") || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("lib_error: %+v", r)
	}
	path := write(t, "cycle.star", `load("cycle.star", "x")`+"\n")
	if r := nsrun(t, path); r.code == 0 || !strings.Contains(r.stderr, "cycle in load graph") {
		t.Errorf("cycle: %+v", r)
	}
}

// Arguments after the recipe are the recipe's.
func TestArgv(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "argv.star", "print(argv)\n")
	if r := nsrun(t, "--sandbox", path, "-v", "x"); r.stdout != "[\"-v\", \"x\"]\n" {
		t.Errorf("%+v", r)
	}
}

// A link kind the kernel lacks is named as such.
func TestMissingKind(t *testing.T) {
	nstest.Kernel(t)
	r := nsrun(t, "--sandbox", write(t, "d.star", "dummy(\"d0\")\n"))
	if r.code != 1 || !strings.Contains(r.stderr, "d.star:1:6") {
		t.Fatalf("%+v", r)
	}
	// This machine's kernel has no dummy; elsewhere the run may succeed.
	if !strings.Contains(r.stderr, "the kernel has no 'dummy' link type") {
		t.Logf("dummy exists here: %s", r.stderr)
	}
}

// An object of the lab replaced by someone else's of the same name is left
// alone and named; the lab's own is gone, so the rollback is complete.
func TestReplacedObjectIsLeftAlone(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "swap.star", `n = netns("x")
bridge("br9")
exec_in(host(), "ip link del br9 && ip link add br9 type bridge && ip link set br9 alias mine")
fail("now")
`)
	r := nsrun(t, path)
	defer nstest.Ip(t, "", "link", "del", "br9")
	if r.code != 1 || !strings.Contains(r.stderr, `bridge "br9"`) || !strings.Contains(r.stderr, `left alone: link "br9" in netns "host" has tag "mine", not "nsrun:swap"`) {
		t.Fatalf("%+v", r)
	}
	if got := nstest.Ip(t, "", "-d", "link", "show", "br9"); !strings.Contains(got, "alias mine") {
		t.Errorf("the other br9 changed: %s", got)
	}
	if r := nsrun(t, "down", "swap"); r.code != 2 { // nothing of the lab's is left
		t.Errorf("down: %+v", r)
	}
}

// SIGINT or SIGTERM during a run rolls it back.
func TestSignalRollsBack(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "sig.star", "n = netns(\"sig\")\nveth(\"s0\", \"s1\", peer_netns = n)\nprint(\"ready\")\nexec_in(n, [\"sleep\", \"30\"])\n")
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		before := nstest.Snapshot(t)
		var out, errb bytes.Buffer
		cmd := exec.Command(nsrunBin, path)
		cmd.Stderr = &errb
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		io.ReadFull(stdout, buf) // "ready\n": the objects exist
		out.Write(buf)
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "rolled back") {
			t.Errorf("%v: %v\n%s", sig, err, errb.String())
		}
		if after := nstest.Snapshot(t); after != before {
			t.Errorf("%v left:\n%s", sig, after)
		}
	}
}

// gc finds what a lab tagged when its record is gone (deleted by hand),
// lists it, removes it only with --yes, and leaves alone what is not tagged
// exactly so.
func TestGC(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	path := write(t, "orphan.star", `n = netns("orph")
a, b = veth("orph0", "orph1", peer_netns = n)
bridge("orph-br")
spawn_in(n, ["sleep", "300"])
`)
	if r := nsrun(t, path); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	nstest.Ip(t, "", "link", "add", "notours", "type", "bridge")
	nstest.Ip(t, "", "link", "set", "notours", "alias", "nsrun:x/y")
	defer nstest.Ip(t, "", "link", "del", "notours")
	if err := os.RemoveAll(filepath.Join(nstest.StateDir, "orphan")); err != nil {
		t.Fatal(err)
	}
	r := nsrun(t, "gc")
	for _, want := range []string{`netns "orph"`, `link "orph0"`, `link "orph-br"`, "process", "claim on netns:orph", "7 objects without a lab"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("gc lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "notours") {
		t.Errorf("gc lists a link whose tag is not exactly nsrun's:\n%s", r.stdout)
	}
	if got := nstest.Ip(t, "", "netns", "list"); !strings.Contains(got, "orph") {
		t.Fatalf("gc without --yes removed something: %q", got)
	}
	if r := nsrun(t, "gc", "--yes"); r.code != 0 {
		t.Errorf("gc --yes: %+v", r)
	}
	nstest.Ip(t, "", "link", "del", "notours")
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("after gc --yes:\n%s\nwant:\n%s", after, before)
	}
	nstest.Ip(t, "", "link", "add", "notours", "type", "bridge") // for the deferred del
}

// A sandboxed run killed before its teardown leaves nothing running: the
// sandbox's launcher ends what the inside started.
func TestSandboxInsideKilled(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "killself.star", "n = netns(\"x\")\nspawn_in(n, [\"sleep\", \"301\"])\nexec_in(host(), \"kill -9 $PPID\")\n")
	if r := nsrun(t, "--sandbox", path); r.code != 128+9 {
		t.Fatalf("exit %d, want the inside's SIGKILL (137): %+v", r.code, r)
	}
	// The sandbox's processes carry its own id, not this test's (which
	// nstest.Kernel's check looks for): look for the lab's tag.
	if left := nstest.Processes("NSRUN_LAB=killself/"); left != "" {
		exec.Command("pkill", "-9", "-f", "^sleep 301$").Run()
		t.Errorf("processes of the sandbox left running: %s", left)
	}
}

// gc never takes a sandbox's lab processes for orphans: their lab is
// recorded in the sandbox's own /run/nsrun.
func TestGCLeavesOtherSandboxesAlone(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "busy.star", "n = netns(\"busy\")\nspawn_in(n, [\"sleep\", \"302\"])\nexec_in(host(), [\"sleep\", \"3\"])\n")
	inner := exec.Command(nsrunBin, "--sandbox", "--rm", path)
	if err := inner.Start(); err != nil {
		t.Fatal(err)
	}
	defer inner.Wait()
	for i := 0; i < 2000; i++ { // until the sandbox's daemon runs
		if out, _ := exec.Command("pgrep", "-f", "sleep 302").Output(); len(out) > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := nsrun(t, "gc"); strings.Contains(r.stdout, "busy") {
		t.Errorf("gc takes another sandbox's lab for an orphan:\n%s", r.stdout)
	}
}

// Rough edges a new user met: help once, on stdout; help of help;
// --version; an empty --name; counts and signals worded right.
func TestCLIEdges(t *testing.T) {
	for _, args := range [][]string{{"down", "--help"}, {"run", "--help"}, {"help", "help"}, {"help", "--help"}, {"version", "--help"}, {"help", "version"}} {
		if r := nsrun(t, args...); r.code != 0 || r.stdout == "" || r.stderr != "" {
			t.Errorf("nsrun %v: %+v", args, r)
		}
	}
	if r := nsrun(t, "--version"); r.code != 0 || !strings.HasPrefix(r.stdout, "nsrun ") {
		t.Errorf("--version: %+v", r)
	}
	if r := nsrun(t, "run", "--name", "", "x.star"); r.code != 2 || !strings.Contains(r.stderr, "--name is empty") {
		t.Errorf("--name \"\": %+v", r)
	}
	if r := nsrun(t, "down", "--bogus"); r.code != 2 || strings.Count(r.stderr, "Usage") > 0 {
		t.Errorf("an unknown flag: %+v", r)
	}
	if r := nsrun(t, "--sandbox", "--keep-on-error", "x.star"); r.code != 2 || !strings.Contains(r.stderr, "--keep-on-error with --sandbox needs --keep") {
		t.Errorf("--sandbox --keep-on-error: %+v", r)
	}
	deaf := write(t, "deaf.star", "netns(\"d\")\n")
	if r := nsrun(t, "graph", deaf, "--format", "dot"); r.code != 0 || !strings.Contains(r.stderr, "never reads argv: --format after it go to the recipe") {
		t.Errorf("a flag after a recipe that ignores argv: %+v", r)
	}
	listening := write(t, "listening.star", "print(argv)\n")
	if r := nsrun(t, "plan", listening, "--x"); r.code != 0 || strings.Contains(r.stderr, "never reads argv") {
		t.Errorf("a flag after a recipe that reads argv: %+v", r)
	}
	help := nsrun(t, "help").stdout
	col := -1
	for _, line := range strings.Split(help, "\n") {
		if !strings.HasPrefix(line, "  ") || strings.HasPrefix(line, "  nsrun") {
			continue
		}
		i := strings.Index(line[2:], "  ") // the gap after the command and its arguments
		if i < 0 {
			continue
		}
		gap := 2 + i
		for gap < len(line) && line[gap] == ' ' {
			gap++
		}
		if col < 0 {
			col = gap
		} else if gap != col {
			t.Errorf("help's columns are not aligned:\n%s", help)
			break
		}
	}
}
