package faultharness

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

var nsrunBin string

// The harness runs the nsrun binary, built once, inside the test's own
// sandbox (and its shards inside sandboxes of their own).
func TestMain(m *testing.M) {
	nstest.MainWith(m, func() func() {
		dir, err := os.MkdirTemp("", "nsrun-bin")
		if err != nil {
			panic(err)
		}
		nsrunBin = filepath.Join(dir, "nsrun")
		if out, err := exec.Command("go", "build", "-o", nsrunBin, "..").CombinedOutput(); err != nil {
			panic(string(out))
		}
		return func() { os.RemoveAll(dir) }
	})
}

type result struct {
	code           int
	stdout, stderr string
}

// nsrun runs the nsrun binary with args.
func nsrun(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(nsrunBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}
