package main

import (
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// `nsrun logs` prints what a lab's background processes wrote, all of them
// or one; nsrun exec sees the node's files; down removes the logs and the
// files with the record.
func TestLogsAndNodeFiles(t *testing.T) {
	nstest.Kernel(t)
	recipe := write(t, "lg.star", `
a = netns("lga", private = ["/run/lg"])
a.write_file("/etc/lg.conf", "conf of a\n")
spawn_in(a, "echo hello from a; exec sleep 300", name = "greeter", ready = "log:hello")
b = netns("lgb")
spawn_in(b, "echo one; echo two >&2; exec sleep 300", name = "twice", ready = "log:two")
spawn_in(b, "exec sleep 301", name = "stopped").stop()
`)
	if r := nsrun(t, recipe); r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	defer nsrun(t, "down", "lg")
	if r := nsrun(t, "logs", "lg"); r.code != 0 || r.stdout != "==> lga/greeter <==\nhello from a\n\n==> lgb/twice <==\none\ntwo\n" {
		t.Errorf("logs: %+v", r)
	}
	if r := nsrun(t, "logs", "lg", "lgb", "twice"); r.code != 0 || r.stdout != "one\ntwo\n" {
		t.Errorf("logs lgb twice: %+v", r)
	}
	if r := nsrun(t, "logs", "lg", "lga", "nope"); r.code != 2 || !strings.Contains(r.stderr, `has no logged process lga/nope (it has: lga/greeter lgb/twice lgb/stopped)`) {
		t.Errorf("logs of an unknown process: %+v", r)
	}
	if r := nsrun(t, "exec", "lg", "lga", "--", "sh", "-c", "cat /etc/lg.conf; test -d /run/lg && echo private"); r.code != 0 || r.stdout != "conf of a\nprivate\n" {
		t.Errorf("exec sees the node's files: %+v", r)
	}
	if r := nsrun(t, "check", "lg"); r.code != 0 {
		t.Errorf("check after a process stopped on purpose: %+v", r)
	}
	if r := nsrun(t, "down", "lg"); r.code != 0 {
		t.Errorf("down: %+v", r)
	}
}
