package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
	"golang.org/x/sys/unix"
)

// bounded runs nsrun with its address space limited (a binary that reads
// without a bound fails instead of taking the machine's memory) and its
// time too; it returns the result and how long it took.
func bounded(t *testing.T, args ...string) (result, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", `ulimit -v 4000000 && exec "$0" "$@"`, nsrunBin}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{0, out.String(), errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("nsrun %v did not end within 30s:\n%s", args, r.stderr)
	}
	return r, time.Since(start)
}

// Issue 12, item 2: a recipe, and each file it loads, is read up to 8 MiB:
// /dev/zero is refused, by name, at once.
func TestRecipeTooLarge(t *testing.T) {
	nstest.Kernel(t)
	if r, _ := bounded(t, "run", "/dev/zero"); r.code != 2 || !strings.Contains(r.stderr, "/dev/zero is larger than 8 MiB") {
		t.Errorf("run /dev/zero: %+v", r)
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.star")
	line := strings.Repeat("#", 1023) + "\n"
	if err := os.WriteFile(big, []byte(strings.Repeat(line, 8<<10)+"x = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	user := filepath.Join(dir, "user.star")
	if err := os.WriteFile(user, []byte("load(\"big.star\", \"x\")\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, _ := bounded(t, "run", user); r.code == 0 || !strings.Contains(r.stderr, big+" is larger than 8 MiB") || !strings.Contains(r.stderr, "user.star:1:1") {
		t.Errorf("a library over 8 MiB: %+v", r)
	}
}

// A FIFO's open waits for a writer: SIGINT (or SIGTERM) ends the wait, and
// the run, at once, saying so. A FIFO with a writer is a recipe like any
// other: read once, it is planned and run.
func TestRecipeFIFO(t *testing.T) {
	nstest.Kernel(t)
	fifo := filepath.Join(t.TempDir(), "pipe.star")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGTERM} {
		ctx, cancel := context.WithTimeout(context.Background(), concLimit)
		r := startNsrun(t, ctx, "run", fifo)
		time.Sleep(300 * time.Millisecond) // waiting for a writer
		r.cmd.Process.Signal(sig)
		start := time.Now()
		res, err := r.wait()
		cancel()
		if err != nil {
			t.Fatalf("%v: %v", sig, err)
		}
		if res.code != 2 || !strings.Contains(res.stderr, "reading "+fifo+": interrupted by "+unix.SignalName(sig.(syscall.Signal))) {
			t.Errorf("%v: %+v", sig, res)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%v: took %v to end", sig, d)
		}
	}

	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		w.WriteString("print(\"from a fifo\")\n")
		w.Close()
	}()
	if r := nsrunWithin(t, "run", "--rm", fifo); r.code != 0 || r.stdout != "from a fifo\n" {
		t.Errorf("a recipe from a FIFO: %+v", r)
	}
}
