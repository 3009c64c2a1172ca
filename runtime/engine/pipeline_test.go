package engine

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"go.starlark.net/starlark"
)

// pipelined runs src on a pipelined runtime over k, whose builtin mk(name)
// queues a namespace's creation, and returns its output, the runtime, whose
// journal is at path, and the run's error (see EndPipeline).
func pipelined(t *testing.T, k kernel.Kernel, faults fault.Injector, src string) (out string, rt *Runtime, path string, err error) {
	t.Helper()
	j, path := tempJournal(t)
	rt = New("t", k, j)
	rt.Faults = faults
	mk := starlark.NewBuiltin("mk", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &name); err != nil {
			return nil, err
		}
		return starlark.None, rt.Later(thread, journal.Step{Op: journal.OpNetns, Name: name, Alias: rt.Tag()}, func(k kernel.Kernel, s *journal.Step) (err error) {
			var id kernel.NetnsID
			id, err = k.NetnsAdd(kernel.NetnsSpec{Name: name, Tag: rt.Tag()})
			s.Ino = id.Ino
			return err
		})
	})
	var printed strings.Builder
	thread := &starlark.Thread{Print: func(_ *starlark.Thread, msg string) { printed.WriteString(msg + "\n") }}
	rt.Attach(thread)
	rt.Pipeline()
	_, err = starlark.ExecFileOptions(FileOptions, thread, "p.star", src, starlark.StringDict{"mk": mk})
	return printed.String(), rt, path, rt.EndPipeline(err)
}

// Queued changes are made in the recipe's order; the first that fails
// voids those queued after it, and is the run's error, with the position
// of the call that asked for it, even though the recipe ran on.
func TestPipelineFailure(t *testing.T) {
	rec := kernel.NewRecorder()
	_, rt, path, err := pipelined(t, rec, fault.FailAt(3), `
for n in ["a", "b", "c", "d", "e"]:
    mk(n)
print("ran on")
`)
	if !errors.Is(err, fault.ErrInjected) {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	if bt := Backtrace(err); !strings.Contains(bt, "p.star:3:7: in <toplevel>") || !strings.Contains(bt, "Error in mk: change 3: injected failure") {
		t.Errorf("backtrace:\n%s\nwant the failing call's position", bt)
	}
	want := []string{"ip netns add a", "ip netns add b"}
	if !reflect.DeepEqual(rec.Log, want) {
		t.Errorf("made %q, want %q", rec.Log, want)
	}
	if got := rt.Journal.Steps(); len(got) != 2 || got[1].Name != "b" {
		t.Errorf("journal steps: %+v", got)
	}
	for _, ns := range []string{"c", "d", "e"} {
		if rt.OwnsNetns(ns) {
			t.Errorf("the run owns %q, which it did not make", ns)
		}
	}
	rt.Journal.Flush()
	steps, err := journal.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || steps[0].State != "" || steps[1].State != "" {
		t.Errorf("journal file: %+v, want a and b made and the others void", steps)
	}
	if undone, failed := rt.Rollback(0); len(undone) != 2 || len(failed) > 0 {
		t.Errorf("rollback: undone %d, failed %v", len(undone), failed)
	}
}

// A recipe that goes on after a change it asked for failed is stopped; a
// change asked for afterwards fails with the first error, and the recipe's
// own error does not hide it.
func TestPipelineStopsTheRecipe(t *testing.T) {
	rec := kernel.NewRecorder()
	out, rt, _, err := pipelined(t, rec, fault.FailAt(1), `
mk("a")
def spin():
    for i in range(10000000):
        pass
spin()
print("ran on")
mk("b")
fail("not reached")
`)
	if !errors.Is(err, fault.ErrInjected) || !strings.Contains(Backtrace(err), "p.star:2:3") {
		t.Fatalf("err = %v\n%s", err, Backtrace(err))
	}
	if out != "" {
		t.Errorf("the recipe ran on after its change failed: printed %q", out)
	}
	if len(rec.Log) != 0 || rt.Journal.Len() != 0 {
		t.Errorf("made %q; journal %+v", rec.Log, rt.Journal.Steps())
	}
	// Not pipelined any more: a change is made at once.
	if err := rt.Later(nil, journal.Step{Op: journal.OpNetns, Name: "c"}, func(k kernel.Kernel, s *journal.Step) error {
		_, err := k.NetnsAdd(kernel.NetnsSpec{Name: "c"})
		return err
	}); err != nil || len(rec.Log) != 1 {
		t.Errorf("after EndPipeline: %v, made %q", err, rec.Log)
	}
}

// Once a queued change failed, the kernel is not handed out: nothing more
// happens in a lab that is not what the recipe made it.
func TestPipelineKernelAfterFailure(t *testing.T) {
	j, _ := journal.Open("")
	rt := New("t", kernel.NewRecorder(), j)
	rt.Pipeline()
	defer rt.EndPipeline(nil)
	if err := rt.Later(nil, journal.Step{Op: journal.OpNetns, Name: "a"}, func(kernel.Kernel, *journal.Step) error { return fault.ErrInjected }); err != nil {
		t.Fatal(err)
	}
	if k, err := rt.Kernel(); k != nil || !errors.Is(err, fault.ErrInjected) {
		t.Errorf("Kernel() = %v, %v; want the failure", k, err)
	}
	if err := rt.Change(nil, journal.Step{Op: journal.OpNetns, Name: "b"}, func(kernel.Kernel, *journal.Step) error { return nil }); !errors.Is(err, fault.ErrInjected) {
		t.Errorf("Change after the failure: %v", err)
	}
}
