package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/store"
)

// nsrunStdin runs nsrun with stdin and env added to the environment.
func nsrunStdin(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(nsrunBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	return runCmd(t, cmd)
}

// runCmd runs cmd and returns its exit code and what it printed.
func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	code, stdout, stderr := nstest.Run(t, cmd)
	return result{code, stdout, stderr}
}

func TestExec(t *testing.T) {
	nstest.Kernel(t)
	upLab(t, "ex", "ex")
	if r := nsrun(t, "exec", "ex", "ex1", "--", "ip", "-br", "addr", "show", "ex-a"); r.code != 0 || !strings.Contains(r.stdout, "10.77.0.1/24") {
		t.Errorf("exec ip addr: %+v", r)
	}
	if r := nsrun(t, "exec", "ex", "ex2", "--", "sh", "-c", "echo out; echo err >&2; exit 7"); r.code != 7 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("exec exit 7: %+v", r)
	}
	if r := nsrunStdin(t, "from stdin\n", nil, "exec", "ex", "ex2", "cat"); r.code != 0 || r.stdout != "from stdin\n" {
		t.Errorf("exec cat (no --): %+v", r)
	}
	if r := nsrun(t, "exec", "ex", "host", "--", "ip", "-br", "link", "show", "ex-h"); r.code != 0 || !strings.Contains(r.stdout, "ex-h") {
		t.Errorf("exec in host: %+v", r)
	}
	// Tagged as the lab's processes, so that down ends what it leaves.
	lab, err := store.Open(store.StateDir, "ex")
	if err != nil {
		t.Fatal(err)
	}
	if r := nsrun(t, "exec", "ex", "ex1", "--", "sh", "-c", "echo $NSRUN_LAB"); r.stdout != lab.ProcessTag()+"\n" || !strings.HasPrefix(r.stdout, "ex/"+lab.Info.ID+"@") {
		t.Errorf("exec's NSRUN_LAB: %+v, want %s", r, lab.ProcessTag())
	}
	if r := nsrun(t, "exec", "ex", "ex1", "--", "sh", "-c", "kill -TERM $$"); r.code != 128+15 {
		t.Errorf("a command killed by SIGTERM: %+v, want exit 143", r)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"exec", "ex", "nope", "--", "true"}, `lab "ex" has no netns "nope" (it has: host, ex1, ex2)`},
		{[]string{"exec", "nolab", "ex1", "--", "true"}, `no lab "nolab"`},
		{[]string{"exec", "ex", "ex1", "--"}, "name a lab, a namespace and a command"},
		{[]string{"exec", "--bogus", "ex", "ex1", "--", "true"}, "unknown flag: --bogus"},
		{[]string{"exec", "0:ex", "ex1", "--", "true"}, "no kept sandbox 0"},
		{[]string{"shell", "ex"}, "name a lab and one of its namespaces"},
	} {
		// 125, as env(1)'s own failures: a command's exit 2 passes through.
		if r := nsrun(t, c.args...); r.code != 125 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("nsrun %v: %+v, want exit 125 and %q", c.args, r, c.want)
		}
	}
	if r := nsrun(t, "exec", "ex", "ex1", "--", "sh", "-c", "exit 2"); r.code != 2 {
		t.Errorf("a command's exit 2: %+v", r)
	}
	// 126: found, but not a program that can run (as a shell says).
	if r := nsrun(t, "exec", "ex", "ex1", "--", "/tmp"); r.code != 126 || !strings.Contains(r.stderr, "is a directory") {
		t.Errorf("exec of a directory: %+v, want exit 126", r)
	}
	if r := nsrun(t, "exec", "ex", "ex1", "--", "no-such-command"); r.code != 127 || !strings.Contains(r.stderr, "no-such-command") {
		t.Errorf("a missing command: %+v", r)
	}
}

// The shell runs interactively (-i) even on a pipe, so its prompt and exit
// code show without a terminal.
func TestShell(t *testing.T) {
	nstest.Kernel(t)
	upLab(t, "sh", "sh")
	script := "echo \"PS1=$PS1\"; ip -br link; exit 3\n"
	r := nsrunStdin(t, script, []string{"SHELL=/bin/bash"}, "shell", "sh", "sh1")
	if r.code != 3 {
		t.Fatalf("bash: exit %d, want 3: %+v", r.code, r)
	}
	for _, want := range []string{`PS1=[nsrun sh/sh1] \w\$ ` + "\n", "sh-a@", "sh-hp@"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bash: stdout lacks %q: %+v", want, r)
		}
	}
	if !strings.Contains(r.stderr, "[nsrun sh/sh1] ") { // the prompt, expanded
		t.Errorf("bash: no prompt on stderr: %+v", r)
	}
	r = nsrunStdin(t, script, []string{"SHELL=/bin/sh"}, "shell", "sh", "sh2")
	if r.code != 3 || !strings.Contains(r.stdout, "PS1=[nsrun sh/sh2] # \n") || !strings.Contains(r.stdout, "sh-b@") {
		t.Errorf("sh: %+v", r)
	}
}
