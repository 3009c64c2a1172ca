package main

import (
	"bytes"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// On a terminal, a run shows how many of its planned changes are made, on
// one line that is erased before the recipe prints and at the end; through
// a pipe it shows nothing; -q prints only errors; -v each change.
func TestProgress(t *testing.T) {
	nstest.Kernel(t)
	master, slave := openPty(t)
	defer master.Close()
	cmd := exec.Command(nsrunBin, "--rm", "testdata/fifty.star")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	io.Copy(&out, master) // EIO once the run, the slave's last user, ends
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	tty := out.String()
	if !regexp.MustCompile(`\r\x1b\[Knsrun: made \d+/\d+ changes`).MatchString(tty) {
		t.Errorf("no progress line on the terminal: %q", tty)
	}
	if last := tty[strings.LastIndex(tty, " changes"):]; !strings.Contains(last, "\r\x1b[K") {
		t.Errorf("the progress line is left at the end: %q", tty)
	}

	if r := nsrun(t, "--rm", "testdata/fifty.star"); strings.Contains(r.stderr, "\x1b[K") || strings.Contains(r.stdout, "\x1b[K") {
		t.Errorf("progress through a pipe: %+v", r)
	}
	if r := nsrun(t, "--rm", "-q", "../../recipes/openvnet.star"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("-q: %+v", r)
	}
	if r := nsrun(t, "--rm", "-v", "../../recipes/netns_blue.star"); r.code != 0 || !strings.Contains(r.stderr, `+ netns "blue" (`) {
		t.Errorf("-v: %+v", r)
	}
}
