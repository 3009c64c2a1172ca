package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nsrun/nsrun/runtime/kernel"
	"go.starlark.net/starlark"
)

// Exit codes of a run.
const (
	ExitOK         = 0 // the recipe succeeded
	ExitFailed     = 1 // the recipe failed and was rolled back cleanly
	ExitUsage      = 2 // bad usage or invalid input; nothing was changed
	ExitIncomplete = 3 // a rollback or teardown left objects behind
)

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
}

// LabName is the default lab name of a recipe: its base name.
func LabName(recipe string) string {
	return strings.TrimSuffix(filepath.Base(recipe), filepath.Ext(recipe))
}

// Run runs a recipe as a lab and returns the exit code. Whatever the recipe
// created is undone if it fails (or is cancelled through ctx), and at the end
// if o.Remove.
func Run(ctx context.Context, o RunOptions) int {
	errf := func(format string, args ...any) { fmt.Fprintf(o.Stderr, "nsrun: "+format+"\n", args...) }
	if o.Lab == "" {
		o.Lab = LabName(o.Recipe)
	}
	src, err := os.ReadFile(o.Recipe)
	if err != nil {
		errf("%v", err)
		return ExitUsage
	}
	// Syntax and name errors are found before anything is changed.
	if _, _, err := starlark.SourceProgramOptions(FileOptions, o.Recipe, src, o.Interp.Predeclared.Has); err != nil {
		fmt.Fprintln(o.Stderr, err)
		return ExitUsage
	}
	lab, journal, err := CreateLab(o.StateDir, LabInfo{Name: o.Lab, Recipe: abs(o.Recipe), Pid: os.Getpid(), Started: now()})
	if err != nil {
		errf("%v", err)
		return ExitUsage
	}
	defer journal.Close()
	rt := New(o.Lab, o.Kernel, journal)
	rt.Ctx, rt.Argv = ctx, o.Args
	if o.Verbose {
		rt.Log = o.Stderr
	}
	thread := o.Interp.NewThread(o.Recipe, rt, o.Stdout)
	stop := context.AfterFunc(ctx, func() { thread.Cancel(context.Cause(ctx).Error()) })
	_, err = o.Interp.ExecFile(thread, o.Recipe)
	stop()
	defer rt.Close()

	if err != nil {
		fmt.Fprintln(o.Stderr, Backtrace(err))
		if o.KeepOnError {
			errf("kept the failed lab %q (%s); remove it with `nsrun down %s`", o.Lab, plural(journal.Len(), "change"), o.Lab)
			return ExitFailed
		}
		undone, failed := rt.Rollback(0)
		if code := report(o.Stderr, "rolled back", undone, failed); code != ExitOK {
			return code
		}
		lab.Remove()
		if IsStatic(err) {
			return ExitUsage
		}
		return ExitFailed
	}
	if o.Remove {
		undone, failed := rt.Rollback(0)
		if o.Verbose || len(failed) > 0 {
			if code := report(o.Stderr, "removed", undone, failed); code != ExitOK {
				return code
			}
		}
		lab.Remove()
		return ExitOK
	}
	if !o.Quiet {
		errf("lab %q is up (%s); remove it with `nsrun down %s`", o.Lab, plural(journal.Len(), "change"), o.Lab)
	}
	return ExitOK
}

// report prints what a rollback or teardown undid, and every object it could
// not remove; it returns ExitIncomplete if there is one.
func report(w io.Writer, verb string, undone []Step, failed []error) int {
	if len(undone) > 0 {
		fmt.Fprintf(w, "nsrun: %s %s%s\n", verb, plural(len(undone), "change"), objects(undone))
	}
	if len(failed) == 0 {
		return ExitOK
	}
	fmt.Fprintf(w, "nsrun: %s could not be undone:\n", plural(len(failed), "change"))
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
	return " (" + strings.Join(names, ", ") + ")"
}

func abs(path string) string {
	if a, err := filepath.Abs(path); err == nil {
		return a
	}
	return path
}

// plural renders a count of things: "1 change", "3 changes".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
