package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// Issue 12, item 4: of two `nsrun down LAB` at once, the one that finds the
// lab's lock taken names the pid of the down that holds it, not that of the
// run that made the lab (long gone, in lab.json). The holder finishes.
func TestDownBusyNamesHolder(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	before := nstest.Snapshot(t)
	if r := nsrun(t, "-q", write(t, "busy2.star", "n = netns(\"busy2\")\n"+stubborn(t, "n"))); r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), concLimit)
	defer cancel()
	first := startNsrun(t, ctx, "down", "busy2")
	time.Sleep(300 * time.Millisecond) // it waits for the stubborn process, holding the lock
	second := nsrunWithin(t, "down", "busy2")
	want := fmt.Sprintf(`lab "busy2" is in use by a running nsrun (pid %d)`, first.cmd.Process.Pid)
	if second.code != 2 || !strings.Contains(second.stderr, want) {
		t.Errorf("second down: %+v, want %q", second, want)
	}
	if r, err := first.wait(); err != nil || r.code != 0 {
		t.Errorf("first down: %+v, %v", r, err)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}
