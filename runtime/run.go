package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"go.starlark.net/starlark"
)

// Exit codes of a run.
const (
	ExitOK         = 0 // the recipe succeeded
	ExitFailed     = 1 // the recipe failed and was rolled back cleanly
	ExitUsage      = 2 // bad usage or invalid input; nothing was changed
	ExitIncomplete = 3 // a rollback or teardown left objects behind
)

// DefaultMaxSteps bounds a recipe's Starlark computation: a recipe that
// loops forever stops, and rolls back. Building a 1,000-host lab takes a
// few hundred thousand steps.
const DefaultMaxSteps = 100_000_000

// RunOptions say how to run a recipe.
type RunOptions struct {
	Recipe      string
	Args        []string
	Lab         string // default: the recipe's base name
	Remove      bool   // tear the lab down even on success
	KeepOnError bool   // leave a failed run's objects in place
	StateDir    string
	Kernel      kernel.Kernel
	Interp      *Interp
	Stdout      io.Writer
	Stderr      io.Writer
	Verbose     bool
	Quiet       bool
	Timeout     time.Duration // the whole run; 0: none
	MaxSteps    uint64        // 0: DefaultMaxSteps
	MaxMemory   uint64        // bytes; 0: DefaultMaxMemory
}

// LabName is the default lab name of a recipe: its base name.
func LabName(recipe string) string {
	return strings.TrimSuffix(filepath.Base(recipe), filepath.Ext(recipe))
}

// Run runs a recipe as a lab and returns the exit code.
//
// First it finishes the rollback of labs whose runs died. Then it runs the
// recipe on a recording kernel that sees the real kernel's names (the
// preflight): bad input and name collisions are reported before anything
// is changed. It claims the names the plan creates outside the lab's own
// namespaces, so that a run overlapping a live lab fails before changing
// anything. Then it runs the recipe for real, holding the lab's lock; a
// global name the plan did not foresee (one computed from what the recipe
// observed) is claimed, and looked up, as it is made. Whatever the recipe
// created is undone if it fails (or is cancelled through ctx), and at the
// end if o.Remove.
func Run(ctx context.Context, o RunOptions) int {
	errf := func(format string, args ...any) { fmt.Fprintf(o.Stderr, "nsrun: "+format+"\n", args...) }
	if o.Lab == "" {
		o.Lab = LabName(o.Recipe)
	}
	if err := ValidLabName(o.Lab); err != nil {
		errf("%v", err)
		return ExitUsage
	}
	src, err := o.Interp.ReadRecipe(ctx, o.Recipe)
	if err != nil {
		errf("%v", err)
		return ExitUsage
	}
	// Syntax and name errors are found before anything is changed.
	if _, _, err := starlark.SourceProgramOptions(FileOptions, o.Recipe, src, o.Interp.Predeclared.Has); err != nil {
		fmt.Fprintln(o.Stderr, err)
		return ExitUsage
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		errf("%v", err)
		return ExitUsage
	}
	Recover(o.StateDir, o.Kernel, o.Stderr)
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.Timeout, fmt.Errorf("timed out after %s (--timeout)", o.Timeout))
		defer cancel()
	}

	plan, err := o.preflight(ctx)
	if err != nil {
		fmt.Fprintln(o.Stderr, Backtrace(err))
		if isFail(err) {
			errf("the recipe failed while planning; nothing was changed")
			return ExitFailed
		}
		errf("found while planning: nothing was changed")
		return ExitUsage
	}

	lab, journal, err := o.createLab(plan)
	if err != nil {
		errf("%v", err)
		errf("nothing was changed")
		return ExitUsage
	}
	defer lab.Unlock()
	defer journal.Close()
	journal.Reserve(plan.Journal.Len())
	// A global name the plan did not foresee is claimed as it is made.
	rt := New(o.Lab, newClaimer(o.Kernel, o.StateDir, lab), journal)
	rt.ID, rt.Dir, rt.Ctx, rt.Argv = lab.Info.ID, lab.Dir, ctx, o.Args
	rt.Faults = faultHook != nil
	rt.Planned = !plan.k.(*kernel.Recorder).Observed
	out := o.Stdout
	switch {
	case o.Verbose:
		rt.Log = o.Stderr
	case o.Quiet:
		out = io.Discard // only errors
	default:
		rt.Progress = NewProgress(o.Stderr, "made", plan.Journal.Len())
		out = rt.Progress.Writer(out)
		o.Stderr = rt.Progress.Writer(o.Stderr)
	}
	o.Interp.Reset()
	if rt.Log == nil { // -v shows each change as it is made, in the recipe's order
		rt.Pipeline()
	}
	_, err = o.exec(ctx, rt, out)
	err = rt.EndPipeline(err)
	if ferr := journal.Flush(); ferr != nil && err == nil {
		err = errJournal(ferr)
	}
	if err == nil {
		err = pinned(o.Kernel, journal.Steps())
	}
	rt.Progress.Clear()
	defer rt.Close()

	if err != nil {
		fmt.Fprintln(o.Stderr, Backtrace(err))
		if o.KeepOnError {
			lab.SetState(LabKept)
			errf("kept the failed lab %q (%s); remove it with `nsrun down %s`", o.Lab, Plural(journal.Len(), "change"), o.Lab)
			return ExitFailed
		}
		undone, failed := rt.Rollback(0)
		ReportSpared(o.Stderr, rt.Spared)
		if code := report(o.Stderr, "rolled back", undone, failed); code != ExitOK {
			lab.SetState(LabIncomplete)
			return code
		}
		lab.Remove()
		return ExitFailed
	}
	if o.Remove {
		undone, failed := rt.Rollback(0)
		ReportSpared(o.Stderr, rt.Spared)
		if o.Verbose || len(failed) > 0 {
			if code := report(o.Stderr, "removed", undone, failed); code != ExitOK {
				lab.SetState(LabIncomplete)
				return code
			}
		}
		lab.Remove()
		return ExitOK
	}
	if err := lab.SetState(LabUp); err != nil {
		errf("recording the lab: %v", err)
	}
	if !o.Quiet {
		errf("lab %q is up (%s); remove it with `nsrun down %s`", o.Lab, Plural(journal.Len(), "change"), o.Lab)
	}
	return ExitOK
}

// exec runs the recipe on rt, printing to out, within the step and memory
// limits and ctx.
func (o *RunOptions) exec(ctx context.Context, rt *Runtime, out io.Writer) (starlark.StringDict, error) {
	thread := o.Interp.NewThread(o.Recipe, rt, out)
	steps := o.MaxSteps
	if steps == 0 {
		steps = DefaultMaxSteps
	}
	thread.SetMaxExecutionSteps(steps)
	stop := context.AfterFunc(ctx, func() { thread.Cancel(context.Cause(ctx).Error()) })
	defer stop()
	watched := watchMemory(thread, o.maxMemory())
	globals, err := o.Interp.ExecFile(thread, o.Recipe)
	if merr := watched(); merr != nil && err == nil {
		err = fmt.Errorf("%s: %w", o.Recipe, merr) // passed at the end: no line to name
	}
	return globals, err
}

func (o *RunOptions) maxMemory() uint64 {
	if o.MaxMemory == 0 {
		return DefaultMaxMemory
	}
	return o.MaxMemory
}

// preflight runs the recipe on a recording kernel that starts with the real
// kernel's names. An error is returned only if the real run would meet it
// too: one that comes after the recipe looked at the network (whose answers
// the recording kernel makes up) is left for the real run to find.
func (o *RunOptions) preflight(ctx context.Context) (*Runtime, error) {
	rec := kernel.NewRecorder()
	rec.Real = o.Kernel
	j, _ := OpenJournal("")
	rt := New(o.Lab, rec, j)
	rt.Ctx, rt.Argv = ctx, o.Args
	_, err := o.exec(ctx, rt, io.Discard)
	rt.Close()
	if err != nil && !rec.Observed {
		return nil, err
	}
	return rt, nil
}

// createLab records the lab and claims the names its plan creates outside
// its own namespaces, atomically with respect to other nsruns.
func (o *RunOptions) createLab(plan *Runtime) (*Lab, *Journal, error) {
	unlock, err := lockState(o.StateDir)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	lab, journal, err := CreateLab(o.StateDir, LabInfo{
		Name: o.Lab, Recipe: abs(o.Recipe), Pid: os.Getpid(), Started: now(), Claims: planClaims(plan),
	})
	if err != nil {
		return nil, nil, err
	}
	if err := claim(o.StateDir, o.Lab, lab.Info.Claims); err != nil {
		journal.Close()
		lab.Info.Claims = nil
		lab.remove(false) // the state is locked
		return nil, nil, err
	}
	return lab, journal, nil
}

// planClaims lists the global names a plan creates: its namespaces, and
// its links in the host namespace.
func planClaims(plan *Runtime) []string {
	seen := map[string]bool{}
	add := func(kind, name string) { seen[claimName(kind, name)] = true }
	for _, s := range plan.Journal.Steps() {
		switch {
		case s.Op == OpNetns:
			add("netns", s.Name)
		case s.Op == OpLink:
			if s.NS == kernel.Host {
				add("link", s.Name)
			}
			if s.PeerName != "" && s.PeerNS == kernel.Host {
				add("link", s.PeerName)
			}
		case s.Op == OpMove && s.New == kernel.Host:
			add("link", s.Name)
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	return names
}

// pinned checks, one stat each, that every namespace steps made is still
// pinned under its name, with its inode: one that someone else deleted (ip
// netns del) or replaced while the recipe ran leaves the lab without it —
// the recipe went on in a namespace no name reaches — and the run, or the
// REPL input, must fail. Only a kernel with namespace paths (the real one)
// is checked.
func pinned(k kernel.Kernel, steps []Step) error {
	p, ok := kernel.As[kernel.Pather](k)
	if !ok {
		return nil
	}
	for _, s := range steps {
		if s.Op != OpNetns {
			continue
		}
		ino, err := nsexec.Inode(p.Path(s.Name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("netns %q was deleted during the run by someone else", s.Name)
		case err != nil:
			return fmt.Errorf("netns %q: %w", s.Name, err)
		case s.Ino != 0 && ino != s.Ino:
			return fmt.Errorf("netns %q was deleted or replaced during the run by someone else (its name now leads to inode %d, not to the lab's %d)", s.Name, ino, s.Ino)
		}
	}
	return nil
}

// isFail reports whether err comes from the recipe's own fail().
func isFail(err error) bool {
	var ev *starlark.EvalError
	for e := err; errors.As(e, &ev); e = ev.Unwrap() {
		if len(ev.CallStack) > 0 && ev.CallStack.At(0).Name == "fail" {
			return true
		}
	}
	return false
}

// report prints what a rollback or teardown undid, and every object it could
// not remove; it returns ExitIncomplete if there is one.
func report(w io.Writer, verb string, undone []Step, failed []error) int {
	if len(undone) > 0 {
		fmt.Fprintf(w, "nsrun: %s %s%s\n", verb, Plural(len(undone), "change"), objects(undone))
	}
	if len(failed) == 0 {
		return ExitOK
	}
	fmt.Fprintf(w, "nsrun: %s could not be undone:\n", Plural(len(failed), "change"))
	for _, err := range failed {
		fmt.Fprintf(w, "  %v\n", err)
	}
	return ExitIncomplete
}

// objects lists the objects among steps, for a one-line summary.
func objects(steps []Step) string {
	var names []string
	for _, s := range steps {
		switch s.Op {
		case OpNetns, OpLink, OpRoute, OpProc, OpSysctl:
			names = append(names, fmt.Sprintf("%s %s", s, s.Pos))
		}
	}
	if len(names) == 0 {
		return ""
	}
	const most = 6 // a line, not a listing: `nsrun -v` shows each change
	if len(names) > most {
		names = append(names[:most], fmt.Sprintf("and %d more", len(names)-most))
	}
	return " (" + strings.Join(names, ", ") + ")"
}

func abs(path string) string {
	if a, err := filepath.Abs(path); err == nil {
		return a
	}
	return path
}

// Plan runs the recipe on a recording kernel that neither changes nor reads
// the machine (no root needed; the same on every machine) and returns the
// kernel, whose Log lists the changes as iproute2/nft commands and whose
// model holds the topology, and the run, whose journal lists the steps.
// Observations (exec_in, ping, ...) are made up: see kernel.Recorder.Observe.
func Plan(ctx context.Context, o RunOptions) (*kernel.Recorder, *Runtime, error) {
	if o.Lab == "" {
		o.Lab = LabName(o.Recipe)
	}
	rec := kernel.NewRecorder()
	j, _ := OpenJournal("")
	rt := New(o.Lab, rec, j)
	rt.ID, rt.Ctx, rt.Argv = "plan", ctx, o.Args
	out := o.Stdout
	if out == nil {
		out = io.Discard
	}
	_, err := o.exec(ctx, rt, out)
	rt.Close()
	return rec, rt, err
}
