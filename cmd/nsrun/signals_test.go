package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
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

// stubborn returns recipe lines that start, in namespace ns, a background
// process that ignores SIGTERM, and wait until it does: stopping it takes
// an undo the whole grace period (proc.StopGrace, 2s) before SIGKILL,
// time enough to signal nsrun while its undo is under way.
func stubborn(t *testing.T, ns string) string {
	ready := filepath.Join(t.TempDir(), "trapped")
	return fmt.Sprintf(`spawn_in(%s, ["sh", "-c", "trap '' TERM; touch %s; exec sleep 300"])
exec_in(host(), ["sh", "-c", "while [ ! -e %s ]; do sleep 0.01; done"])
`, ns, ready, ready)
}

// recoverAfter, if t failed, finishes the undo an nsrun that died left.
func recoverAfter(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			nsrun(t, "recover")
		}
	})
}

// startRun starts `nsrun run path` with its output on pipes, and waits for
// the recipe to print "ready".
func startRun(t *testing.T, path string) (cmd *exec.Cmd, stdout, stderr *os.File) {
	t.Helper()
	cmd = exec.Command(nsrunBin, path)
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	line, err := bufio.NewReader(outR).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the recipe did not get ready: %q, %v", line, err)
	}
	return cmd, outR, errR
}

func waitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			t.Errorf("nsrun was killed by %v", ws.Signal())
			return -1
		}
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// Issue 12, item 1: SIGHUP (the terminal closed) cancels a run as SIGINT
// and SIGTERM do: it is rolled back and reported as interrupted by a
// hangup. Once the rollback is under way, more SIGHUP, SIGINT and SIGTERM
// do not stop it.
func TestHangupRollsBack(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	before := nstest.Snapshot(t)
	path := write(t, "hup.star", `n = netns("hup")
veth("hup0", "hup1", peer_netns = n)
`+stubborn(t, "n")+`print("ready")
exec_in(host(), ["sleep", "30"])
`)
	cmd, stdout, stderr := startRun(t, path)
	defer stdout.Close()
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond) // the rollback waits for the stubborn process
	for _, sig := range []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
		cmd.Process.Signal(sig)
		time.Sleep(50 * time.Millisecond)
	}
	msgs, _ := io.ReadAll(stderr)
	if code := waitCode(t, cmd); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"interrupted by SIGHUP", "rolled back"} {
		if !bytes.Contains(msgs, []byte(want)) {
			t.Errorf("stderr lacks %q:\n%s", want, msgs)
		}
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}

// A closed terminal takes nsrun's output with it: what it prints during the
// rollback goes to pipes nobody reads (SIGPIPE, EPIPE), and the rollback
// still finishes.
func TestRollbackWithoutOutput(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	before := nstest.Snapshot(t)
	path := write(t, "hupout.star", `n = netns("hupout")
veth("hupo0", "hupo1", peer_netns = n)
`+stubborn(t, "n")+`print("ready")
exec_in(host(), ["sleep", "30"])
`)
	cmd, stdout, stderr := startRun(t, path)
	stdout.Close()
	stderr.Close()
	cmd.Process.Signal(syscall.SIGINT)
	if code := waitCode(t, cmd); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}

// manyNetns is a recipe of n namespaces, each with a veth to the host, and
// a stubborn process: a lab whose teardown takes a while.
func manyNetns(t *testing.T, prefix string, n int) string {
	return fmt.Sprintf(`for i in range(%d):
    ns = netns("%s%%d" %% i)
    veth("%s%%d" %% i, "eth0", peer_netns = ns)
`, n, prefix, prefix) + stubborn(t, "ns")
}

// `nsrun down` signalled mid-way (SIGHUP, then SIGINT and SIGTERM) still
// finishes removing the lab.
func TestHangupDuringDown(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	t.Cleanup(func() {
		if t.Failed() {
			nsrun(t, "down", "hupdown")
		}
	})
	before := nstest.Snapshot(t)
	if r := nsrun(t, "-q", write(t, "hupdown.star", manyNetns(t, "hd", 60))); r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(nsrunBin, "down", "hupdown")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // down waits for the stubborn process
	for _, sig := range []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
		cmd.Process.Signal(sig)
		time.Sleep(50 * time.Millisecond)
	}
	if code := waitCode(t, cmd); code != 0 || !strings.Contains(out.String(), `removed lab "hupdown"`) {
		t.Errorf("down: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}

// A REPL session whose terminal closes (SIGHUP, then EIO on every read and
// write) ends as at Ctrl-D: its lab is torn down, the running input's
// changes included, and nothing is left.
func TestReplHangup(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	before := nstest.Snapshot(t)
	for _, running := range []bool{false, true} {
		cmd, tm, slave := startRepl(t, "rhup")
		// The terminal hangs up as when its master is closed (which a
		// read of the master in progress would hold off: openPty's Fd
		// made it blocking).
		tty, err := os.OpenFile(slave, os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		tm.expect(">>> ")
		tm.send("a = netns(\"rhup1\")\r")
		tm.expect(">>> ")
		if running { // hung up in the middle of an input
			tm.send("netns(\"rhup2\"); print(\"sleeping\"); exec_in(host(), [\"sleep\", \"30\"])\r")
			tm.expect("sleeping")
		}
		// The terminal is gone: its session gets SIGHUP, reads get EOF
		// and writes EIO.
		if err := unix.IoctlSetInt(int(tty.Fd()), unix.TIOCVHANGUP, 0); err != nil {
			t.Fatal(err)
		}
		exited := make(chan int, 1)
		go func() { exited <- waitCode(t, cmd) }()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("running %v: exit %d", running, code)
			}
		case <-time.After(hang):
			cmd.Process.Kill()
			t.Fatalf("running %v: the repl did not end at the hangup", running)
		}
		if after := nstest.Snapshot(t); after != before {
			t.Errorf("running %v: the session left:\n%s\nwant:\n%s", running, after, before)
		}
	}
}
