package builtins_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/nsrun/nsrun/builtins"
	"github.com/nsrun/nsrun/recipes"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// runSrc runs src as a recipe file named name on kernel k, in lab "t", and
// returns what it printed, its runtime and its error.
func runSrc(t *testing.T, k kernel.Kernel, name, src string) (string, *engine.Runtime, error) {
	t.Helper()
	return run(t, k, name, src, false)
}

// run is runSrc on a runtime that is pipelined if piped, as `nsrun run`
// makes one.
func run(t *testing.T, k kernel.Kernel, name, src string, piped bool) (string, *engine.Runtime, error) {
	t.Helper()
	return runFaulty(t, k, nil, name, src, piped)
}

// runFaulty is run with faults injected into its changes.
func runFaulty(t *testing.T, k kernel.Kernel, faults fault.Injector, name, src string, piped bool) (string, *engine.Runtime, error) {
	t.Helper()
	return runWith(t, k, faults, name, src, piped, nil)
}

// runArgs is runSrc with the recipe's arguments (argv).
func runArgs(t *testing.T, k kernel.Kernel, name, src string, args ...string) (string, *engine.Runtime, error) {
	t.Helper()
	return runWith(t, k, nil, name, src, false, args)
}

func runWith(t *testing.T, k kernel.Kernel, faults fault.Injector, name, src string, piped bool, args []string) (string, *engine.Runtime, error) {
	t.Helper()
	return runAt(t, k, faults, t.TempDir(), name, src, piped, args)
}

// runIn is runSrc with the recipe in directory dir, beside its files.
func runIn(t *testing.T, k kernel.Kernel, dir, name, src string) (string, *engine.Runtime, error) {
	t.Helper()
	return runAt(t, k, nil, dir, name, src, false, nil)
}

func runAt(t *testing.T, k kernel.Kernel, faults fault.Injector, dir, name, src string, piped bool, args []string) (string, *engine.Runtime, error) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	j, _ := journal.Open("")
	rt := engine.New("t", k, j)
	rt.Faults = faults
	rt.Dir = filepath.Join(t.TempDir(), "t") // the lab's directory, for its nodes' files
	if err := os.Mkdir(rt.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	in := &engine.Interp{Predeclared: builtins.Predeclared(args), Std: recipes.Std}
	var out bytes.Buffer
	thread := in.NewThread(name, rt, &out)
	if piped {
		rt.Pipeline()
	}
	_, err := in.ExecFile(thread, path)
	return out.String(), rt, rt.EndPipeline(err)
}

// rollback undoes everything rt did and fails t if anything could not be.
func rollback(t *testing.T, rt *engine.Runtime) {
	t.Helper()
	if _, failed := rt.Rollback(0); len(failed) > 0 {
		t.Errorf("rollback: %v", failed)
	}
}
