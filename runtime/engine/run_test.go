package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/builtins"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/store"
)

// events records what a Reporter is told.
type events struct{ log []string }

func (e *events) Recovered(r store.Result) { e.log = append(e.log, "recovered "+r.Lab) }
func (e *events) Made(made, planned int) {
	e.log = append(e.log, fmt.Sprintf("made %d/%d", made, planned))
}
func (e *events) Ended(err error) { e.log = append(e.log, fmt.Sprintf("ended %v", err)) }

func runOn(t *testing.T, k kernel.Kernel, src string, o engine.RunOptions) (store.Result, *events, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lab.star")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	ev := &events{}
	o.Recipe, o.StateDir, o.Kernel, o.Reporter = path, t.TempDir(), k, ev
	o.Interp = &engine.Interp{Predeclared: builtins.Predeclared(nil)}
	o.Stdout, o.Stderr = &stderr, &stderr
	return engine.Run(context.Background(), o), ev, stderr.String()
}

// Run returns what happened and prints nothing but the recipe's print()s:
// the command line renders the result. Its reporter hears of each change
// as it is made, and of the recipe's end before the rollback or teardown.
func TestRunResult(t *testing.T) {
	r, ev, printed := runOn(t, kernel.NewRecorder(), "netns(\"a\")\nnetns(\"b\")\n", engine.RunOptions{Remove: true})
	if printed != "" {
		t.Errorf("the engine printed %q", printed)
	}
	if r.Err != nil || r.Stage != engine.StageRun || r.State != store.LabRemoved || len(r.Made) != 2 || len(r.Undone) != 2 || len(r.Failed)+len(r.Left)+len(r.Spared) != 0 {
		t.Errorf("result: %+v", r)
	}
	if got, want := strings.Join(ev.log, ", "), "made 1/2, made 2/2, ended <nil>"; got != want {
		t.Errorf("reporter told %q, want %q", got, want)
	}

	// The second change fails: the run's error names its line, and the
	// first is rolled back.
	r, ev, _ = runOn(t, kernel.NewRecorder(), "netns(\"a\")\nnetns(\"b\")\n", engine.RunOptions{Faults: fault.FailAt(2)})
	if !errors.Is(r.Err, fault.ErrInjected) || r.Stage != engine.StageRun || r.State != store.LabRemoved || len(r.Made) != 1 || len(r.Undone) != 1 {
		t.Errorf("result: %+v", r)
	}
	if _, pos := engine.ErrorAt(r.Err); !strings.HasSuffix(pos, "lab.star:2:6") {
		t.Errorf("error at %q, want lab.star:2:6", pos)
	}
	if n := len(ev.log); n == 0 || !strings.HasPrefix(ev.log[n-1], "ended ") || !strings.Contains(ev.log[n-1], "injected failure") {
		t.Errorf("reporter told %q", ev.log)
	}

	// Found before anything is changed: the stage says where.
	for _, c := range []struct{ src, stage string }{
		{"netns(\"a\"\n", engine.StageSyntax},
		{"netns(\"a\")\nfail(\"no\")\n", engine.StagePlan},
	} {
		r, _, _ := runOn(t, kernel.NewRecorder(), c.src, engine.RunOptions{})
		if r.Err == nil || r.Stage != c.stage || r.State != "" || len(r.Made) != 0 {
			t.Errorf("%q: %+v", c.src, r)
		}
	}
	r, _, _ = runOn(t, kernel.NewRecorder(), "netns(\"a\")\n", engine.RunOptions{Lab: "../x"})
	if r.Err == nil || r.Stage != engine.StageInput {
		t.Errorf("bad lab name: %+v", r)
	}
}

// A session's input that fails is rolled back alone, even its first: the
// lab's record stays, the session goes on, and its end removes the lab.
func TestSessionFirstInputFails(t *testing.T) {
	state := t.TempDir()
	var out bytes.Buffer
	s, err := engine.OpenSession(engine.RunOptions{
		Lab: "s", StateDir: state, Kernel: kernel.NewRecorder(),
		Interp: &engine.Interp{Predeclared: builtins.Predeclared(nil)}, Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	eval := func(src string) store.Result {
		f, err := engine.FileOptions.Parse("<stdin>", src, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, r := s.Eval(context.Background(), f)
		return r
	}
	if r := eval("netns(\"a\"); fail(\"no\")\n"); r.Err == nil || len(r.Undone) != 1 || r.State != store.LabRunning {
		t.Errorf("the failed first input: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(state, "s", "lab.json")); err != nil {
		t.Fatalf("the lab's record is gone after its first input failed: %v", err)
	}
	if r := eval("netns(\"b\")\n"); r.Err != nil {
		t.Errorf("the next input: %v", r.Err)
	}
	if r := s.Close(false); len(r.Failed) > 0 || r.State != store.LabRemoved || len(r.Undone) != 1 {
		t.Errorf("the session's end: %+v", r)
	}
}

// A run that cannot reach other machines (no Connect: apply's, a
// session's) refuses a recipe that declares them, before any change: it
// would make every machine's objects here.
func TestRunAcrossNeedsItsMachines(t *testing.T) {
	r, _, _ := runOn(t, kernel.NewRecorder(), "netns(\"a\")\nm2 = machine(\"m2\", ssh = \"root@m2\")\nnetns(\"b\", on = m2)\n", engine.RunOptions{})
	if r.Err == nil || !strings.Contains(r.Err.Error(), "lab.star:2:13: machine \"m2\"") || !strings.Contains(r.Err.Error(), "is made by `nsrun run`") || r.Stage != engine.StagePlan || len(r.Made) != 0 {
		t.Errorf("result: %v %+v", r.Err, r)
	}
}
