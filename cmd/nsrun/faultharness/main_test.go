package faultharness

import (
	"os/exec"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

var nsrunBin string

// The harness runs the nsrun binary, built once, inside the test's own
// sandbox (and its shards inside sandboxes of their own).
func TestMain(m *testing.M) { nstest.MainWith(m, nstest.Binary("..", &nsrunBin)) }

type result struct {
	code           int
	stdout, stderr string
}

// nsrun runs the nsrun binary with args.
func nsrun(t *testing.T, args ...string) result {
	t.Helper()
	code, stdout, stderr := nstest.Run(t, exec.Command(nsrunBin, args...))
	return result{code, stdout, stderr}
}
