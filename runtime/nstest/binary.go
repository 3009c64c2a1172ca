package nstest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Binary returns a setup for MainWith that builds the command in package
// directory pkg once, for the tests, into *path; its teardown removes it.
func Binary(pkg string, path *string) func() func() {
	return func() func() {
		dir, err := os.MkdirTemp("", "nsrun-bin")
		if err != nil {
			panic(err)
		}
		*path = filepath.Join(dir, "nsrun")
		if out, err := exec.Command("go", "build", "-o", *path, pkg).CombinedOutput(); err != nil {
			panic(string(out))
		}
		return func() { os.RemoveAll(dir) }
	}
}

// Run runs cmd and returns its exit code and what it printed; t fails if
// it could not be run at all.
func Run(t testing.TB, cmd *exec.Cmd) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}
