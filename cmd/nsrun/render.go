package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/store"
	"github.com/nsrun/nsrun/runtime/words"
)

// The engine returns what a run, a session, a recovery or a teardown did
// (store.Result); this file words it for a person and picks the exit
// code. json.go renders the same results for --json.

// reporter shows a run or a session as it goes (see engine.Reporter): the
// labs of dead runs it recovers first, the progress line (on a terminal,
// unless -v or -q), and the backtrace of a recipe or input that failed,
// before its rollback begins.
type reporter struct {
	stderr io.Writer // through line's writer, if there is a line
	line   *progressLine
}

func (r *reporter) Recovered(res store.Result) { printRecovered(r.stderr, res) }
func (r *reporter) Made(made, planned int)     { r.line.show(made, planned) }

func (r *reporter) Ended(err error) {
	r.line.clear()
	if err != nil {
		fmt.Fprintln(r.stderr, engine.Backtrace(err))
	}
}

// codeOf is the exit code of a result: 3 if anything is left behind
// that should have gone, 0 for a success, 1 for a recipe that failed (and
// was rolled back, or kept) or a fail() found while planning, 2 for
// invalid input (nothing was changed).
func codeOf(r store.Result) int {
	switch {
	case len(r.Failed) > 0:
		return engine.ExitIncomplete
	case r.Err == nil:
		return engine.ExitOK
	case r.Stage == engine.StageRun:
		return engine.ExitFailed
	case r.Stage == engine.StagePlan && engine.IsFail(r.Err):
		return engine.ExitFailed
	}
	return engine.ExitUsage
}

// printRun tells w what a run did, once it is done (its backtrace, if it
// failed while running, was printed as it ended: see reporter), and
// returns its exit code. Without verbose, a teardown (--rm) that went well
// is not reported; with quiet, neither is a lab left up.
func printRun(w io.Writer, r store.Result, verbose, quiet bool) int {
	errf := func(format string, args ...any) { fmt.Fprintf(w, "nsrun: "+format+"\n", args...) }
	code := codeOf(r)
	switch r.Stage {
	case engine.StageInput:
		errf("%v", r.Err)
		return code
	case engine.StageSyntax:
		fmt.Fprintln(w, r.Err)
		return code
	case engine.StagePlan:
		fmt.Fprintln(w, engine.Backtrace(r.Err))
		if code == engine.ExitFailed {
			errf("the recipe failed while planning; nothing was changed")
		} else {
			errf("found while planning: nothing was changed")
		}
		return code
	case engine.StageClaim:
		errf("%v", r.Err)
		errf("nothing was changed")
		return code
	}
	switch {
	case r.Err != nil && r.State == store.LabKept:
		printRecordErr(w, r)
		errf("kept the failed lab %q (%s); remove it with `nsrun down %s`", r.Lab, words.Plural(len(r.Made), "change"), r.Lab)
	case r.Err != nil:
		printUndo(w, "rolled back", r)
	case r.State != store.LabUp: // --rm
		printSpared(w, r)
		if verbose || len(r.Failed) > 0 {
			printUndone(w, "removed", r)
		}
	default:
		printRecordErr(w, r)
		if !quiet {
			errf("lab %q is up (%s); remove it with `nsrun down %s`", r.Lab, words.Plural(len(r.Made), "change"), r.Lab)
		}
	}
	return code
}

// printUndo tells w what a rollback or teardown did: the objects it left
// alone, what it undid, and every change it could not undo.
func printUndo(w io.Writer, verb string, r store.Result) {
	printSpared(w, r)
	printUndone(w, verb, r)
}

func printSpared(w io.Writer, r store.Result) {
	for _, err := range r.Spared {
		fmt.Fprintf(w, "nsrun: %v\n", err)
	}
}

func printUndone(w io.Writer, verb string, r store.Result) {
	if len(r.Undone) > 0 {
		fmt.Fprintf(w, "nsrun: %s %s%s\n", verb, words.Plural(len(r.Undone), "change"), objects(r.Undone))
	}
	if len(r.Failed) == 0 {
		return
	}
	fmt.Fprintf(w, "nsrun: %s could not be undone:\n", words.Plural(len(r.Failed), "change"))
	for _, err := range r.Failed {
		fmt.Fprintf(w, "  %v\n", err)
	}
}

func printRecordErr(w io.Writer, r store.Result) {
	if r.RecordErr != nil {
		fmt.Fprintf(w, "nsrun: %v\n", r.RecordErr)
	}
}

// objects lists the objects among steps, for a one-line summary.
func objects(steps []journal.Step) string {
	var names []string
	for _, s := range steps {
		switch s.Op {
		case journal.OpNetns, journal.OpLink, journal.OpRoute, journal.OpProc, journal.OpSysctl:
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

// printRecovered tells w what recovery did to labs of runs that died, and
// of records nsrun did not write, which it left alone.
func printRecovered(w io.Writer, rs ...store.Result) {
	for _, r := range rs {
		if r.State == store.LabUnverified {
			fmt.Fprintf(w, "nsrun: %v\n", r.Err)
			continue
		}
		if r.Reverted {
			fmt.Fprintf(w, "nsrun: lab %q is up as it was before the change that died (an apply, a session's input): undid %s\n", r.Lab, words.Plural(len(r.Undone), "change"))
		} else {
			fmt.Fprintf(w, "nsrun: recovered lab %q, left by a run that died (pid %d): undid %s\n", r.Lab, r.Pid, words.Plural(len(r.Undone), "change"))
		}
		for _, err := range r.Failed {
			fmt.Fprintf(w, "  could not undo: %v\n", err)
		}
		for _, err := range r.Spared {
			fmt.Fprintf(w, "  %v\n", err)
		}
	}
}

// failures gathers the failures of results: recovery's exit code is 3 if
// there is one.
func failures(rs []store.Result) (failed []error) {
	for _, r := range rs {
		failed = append(failed, r.Failed...)
	}
	return failed
}

// printDown tells what `nsrun down` did to one lab: what it left alone and
// could not undo on stderr, its success on stdout (unless quiet).
func printDown(stdout, stderr io.Writer, r store.Result, quiet bool) {
	if r.Err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", r.Err)
		return
	}
	printSpared(stderr, r)
	if len(r.Failed) > 0 {
		fmt.Fprintf(stderr, "nsrun: lab %q: %d of its changes could not be undone:\n", r.Lab, len(r.Failed))
		for _, err := range r.Failed {
			fmt.Fprintf(stderr, "  %v\n", err)
		}
		return
	}
	if !quiet {
		fmt.Fprintf(stdout, "nsrun: removed lab %q (%s undone)\n", r.Lab, words.Plural(len(r.Undone), "change"))
	}
}
