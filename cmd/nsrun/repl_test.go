package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// hang turns a hang into a failure; nothing is timed.
const hang = 60 * time.Second

// openPty returns a pseudo-terminal's master and its slave.
// startRepl starts `nsrun repl --name lab` on a terminal of its own (its
// controlling one, in a session of its own) and returns the command, the
// terminal's far end, and the name of the terminal's device.
func startRepl(t *testing.T, lab string) (*exec.Cmd, *term, string) {
	t.Helper()
	master, slave := openPty(t)
	t.Cleanup(func() { master.Close() })
	cmd := exec.Command(nsrunBin, "repl", "--name", lab)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir(), "TERM=dumb")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	tm := &term{t: t, master: master}
	tm.cond = sync.NewCond(&tm.mu)
	go tm.pump()
	return cmd, tm, slave.Name()
}

func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 200})
	return m, s
}

// term is the user's side of a session on a pseudo-terminal.
type term struct {
	t      *testing.T
	master *os.File
	mu     sync.Mutex
	cond   *sync.Cond
	out    bytes.Buffer
	seen   int // output up to here has been matched
	closed bool
}

func (tm *term) pump() {
	buf := make([]byte, 4096)
	for {
		n, err := tm.master.Read(buf)
		tm.mu.Lock()
		tm.out.Write(buf[:n])
		if err != nil {
			tm.closed = true
		}
		tm.cond.Broadcast()
		tm.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// expect waits for want in the output after what was matched before.
func (tm *term) expect(want string) string {
	tm.t.Helper()
	timer := time.AfterFunc(hang, func() { tm.mu.Lock(); tm.closed = true; tm.cond.Broadcast(); tm.mu.Unlock() })
	defer timer.Stop()
	tm.mu.Lock()
	defer tm.mu.Unlock()
	for {
		rest := tm.out.String()[tm.seen:]
		if i := strings.Index(rest, want); i >= 0 {
			tm.seen += i + len(want)
			return rest[:i]
		}
		if tm.closed {
			tm.t.Fatalf("waiting for %q; the output after the last match:\n%s", want, rest)
		}
		tm.cond.Wait()
	}
}

func (tm *term) dump() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

func (tm *term) send(s string) {
	tm.t.Helper()
	if _, err := tm.master.Write([]byte(s)); err != nil {
		tm.t.Fatal(err)
	}
}

// Issue 5, item 1: a REPL session on a terminal builds two namespaces,
// fails an input (only it is rolled back), completes names with Tab, and
// tears everything down at Ctrl-D.
func TestReplTerminal(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	cmd, tm, _ := startRepl(t, "r5")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	done := false
	defer func() {
		if !done { // a failure: end the session as a crash would, and recover its lab
			cmd.Process.Kill()
			<-exited
			nsrun(t, "recover")
		}
	}()

	tm.expect(">>> ")
	tm.send("a = netns(\"r5a\")\r")
	tm.expect(">>> ")
	tm.send("b = netns(\"r5b\")\r")
	tm.expect(">>> ")
	tm.send("c = netns(\"r5c\"); fail(\"boom\")\r")
	tm.expect("Error in fail: boom")
	tm.expect(`rolled back 1 change (netns "r5c"`)
	tm.expect(">>> ")
	if got := nstest.Ip(t, "", "netns", "list"); !strings.Contains(got, "r5a") || !strings.Contains(got, "r5b") || strings.Contains(got, "r5c") {
		t.Errorf("after the failed input, ip netns list:\n%s", got)
	}
	if r := nsrun(t, "ls"); !strings.Contains(r.stdout, "r5") {
		t.Errorf("ls does not show the session's lab: %+v", r)
	}
	tm.send("c\r") // the failed input's global is gone too
	tm.expect("undefined: c")
	tm.expect(">>> ")

	// Tab completes a builtin, an attribute and, in a string, a link name.
	tm.send("type(ve\t)\r")
	tm.expect("builtin_function_or_method")
	tm.expect(">>> ")
	tm.send("a.na\t.upper()\r")
	tm.expect(`"R5A"`)
	tm.expect(">>> ")
	tm.send("b.link(\"l\t\").name.upper()\r")
	tm.expect(`"LO"`)
	tm.expect(">>> ")
	// In .link(", the links of that namespace only: r5y, not a's r5x.
	tm.send("x, y = veth(\"r5x\", \"r5y\", netns = a, peer_netns = b)\r")
	tm.expect(">>> ")
	tm.send("b.link(\"r5\t\").name.upper()\r")
	tm.expect(`"R5Y"`)
	tm.expect(">>> ")

	// A multi-line statement; Ctrl-C at the prompt gives a new one.
	tm.send("for i in range(2):\r")
	tm.expect("... ")
	tm.send("    print(\"sum\", i + 40)\r")
	tm.expect("... ")
	tm.send("\r")
	tm.expect("sum 41")
	tm.expect(">>> ")
	tm.send("\x03")
	tm.expect("^C")
	// The prompt readline redraws at Ctrl-C comes before it returns: wait
	// for the output of a line read by the next prompt before Ctrl-D.
	tm.send("print(\"after\" + \"C\")\r")
	tm.expect("afterC")
	tm.expect(">>> ")

	tm.send("\x04")
	select {
	case err := <-exited:
		done = true
		if err != nil {
			t.Fatalf("repl exited with %v:\n%s", err, tm.dump())
		}
	case <-time.After(hang):
		t.Fatalf("the repl did not end at Ctrl-D:\n%s", tm.dump())
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("the session left:\n%s\nwant:\n%s", after, before)
	}
}

// Without a terminal the REPL reads plain lines: a recipe runs first and its
// globals are in scope; a failed input is rolled back; at EOF the lab goes.
func TestReplStdin(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	recipe := write(t, "pair.star", "x = netns(\"rs1\")\n")
	cmd := exec.Command(nsrunBin, "repl", recipe)
	cmd.Stdin = strings.NewReader("y = netns(\"rs2\")\nnetns(\"rs3\"); fail(\"no\")\nprint(x.name, y.name)\nprint(exec_in(host(), \"ip netns list\").stdout)\n")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "rs1 rs2") || strings.Contains(out.String(), "rs3") {
		t.Errorf("stdout:\n%s", out.String())
	}
	if !strings.Contains(errb.String(), "Error in fail: no") || !strings.Contains(errb.String(), `rolled back 1 change (netns "rs3"`) {
		t.Errorf("stderr:\n%s", errb.String())
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("the session left:\n%s\nwant:\n%s", after, before)
	}
	// A session makes a lab on this machine only: machine() is refused,
	// and nothing is placed elsewhere.
	cmd = exec.Command(nsrunBin, "repl")
	cmd.Stdin = strings.NewReader("m2 = machine(\"m2\", ssh = \"root@m2\")\nnetns(\"rs4\", on = m2)\n")
	out.Reset()
	errb.Reset()
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || !strings.Contains(errb.String(), "a lab across machines is made by `nsrun run`") {
		t.Errorf("machine() in a session: %v\n%s", err, errb.String())
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("the session left:\n%s\nwant:\n%s", after, before)
	}
	if r := nsrun(t, "help", "repl"); r.code != 0 || !strings.Contains(r.stdout, "--keep") || !strings.Contains(r.stdout, "Ctrl-D") {
		t.Errorf("help repl: %+v", r)
	}
}

// `nsrun repl LAB` opens a session on a lab that is up: its objects are
// found by name, each input changes it as a transaction (a failed one
// leaves it as it was), Ctrl-D leaves it up; a session killed midway is
// undone back to its input's start by the next nsrun, the lab still up.
func TestReplOnALabThatIsUp(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	v1 := write(t, "ru.star", `a = netns("ru-a"); b = netns("ru-b")
x, y = veth("ru-x", "eth0", netns=a, peer_netns=b)
x.addr("10.74.0.1/24").up(); y.addr("10.74.0.2/24").up()
c = netns("ru-c")
`)
	labUp(t, v1, "ru")
	time.Sleep(settle)
	before := nstest.LabSnapshot(t)
	cmd := exec.Command(nsrunBin, "repl", "ru")
	cmd.Stdin = strings.NewReader(`link("ru-a", "ru-x").delete(); ns("ru-c").delete(); fail("no")
link(ns("ru-b"), "eth0").addr("10.74.0.3/24")
print(ns("ru-b").addrs())
`)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "10.74.0.3/24") || !strings.Contains(errb.String(), "Error in fail: no") ||
		!strings.Contains(errb.String(), `lab "ru" is up`) {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	want := strings.Replace(before, "eth0    inet 10.74.0.2/24 brd 10.74.0.255 scope global eth0\\       \n",
		"eth0    inet 10.74.0.2/24 brd 10.74.0.255 scope global eth0\\       \neth0    inet 10.74.0.3/24 brd 10.74.0.255 scope global secondary eth0\\       \n", 1)
	if want == before {
		t.Fatalf("the snapshot has no 10.74.0.2 as the test expects:\n%s", before)
	}
	if after := labAfter(t, want); after != want {
		t.Errorf("after the session:\n%s\nwant:\n%s", after, want)
	}
	if r := nsrun(t, "check", "ru"); r.code != 0 {
		t.Errorf("check: %+v", r)
	}

	// Killed in the middle of an input.
	before = nstest.LabSnapshot(t)
	cmd = exec.Command(nsrunBin, "repl", "ru")
	cmd.Stdin = strings.NewReader(`netns("ru-k"); link("ru-a", "ru-x").set(mtu=1300); exec_in(host(), ["sleep", "2"])` + "\n")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hang)
	for !strings.Contains(nstest.Ip(t, "ru-a", "link", "show", "ru-x"), "mtu 1300") {
		if time.Now().After(deadline) {
			t.Fatal("the session's input did not get to its change")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if r := nsrun(t, "recover"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, `lab "ru" is up as it was`) {
		t.Errorf("recover: %+v", r)
	}
	// The command the input ran is not nsrun's to stop once nsrun is
	// killed: it ends by itself.
	after := labAfter(t, before)
	for ; after != before && time.Now().Before(deadline); after = labAfter(t, before) {
	}
	if after != before {
		t.Errorf("after the recovery:\n%s\nwant:\n%s", after, before)
	}
	if r := nsrun(t, "ls"); !strings.Contains(r.stdout, "ru ") || !strings.Contains(r.stdout, " up ") {
		t.Errorf("ls: %+v", r)
	}
}
