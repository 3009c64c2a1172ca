package engine

import (
	"github.com/nsrun/nsrun/runtime/clab"

	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/store"
	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

var now = time.Now

// Exit codes of nsrun (the command line picks one from a Result).
const (
	ExitOK         = 0 // the recipe succeeded
	ExitFailed     = 1 // the recipe failed and was rolled back cleanly
	ExitUsage      = 2 // bad usage or invalid input; nothing was changed
	ExitIncomplete = 3 // a rollback or teardown left objects behind
	ExitPartial    = 4 // plan, graph: the plan could not go on to the recipe's end
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
	Stdout      io.Writer // where the recipe's print()s go
	Stderr      io.Writer // where -v shows each change as it is made
	Reporter    Reporter  // told of the run as it goes; nil: no one
	Verbose     bool
	Quiet       bool          // the recipe's print()s are dropped
	Timeout     time.Duration // the whole run; 0: none
	MaxSteps    uint64        // 0: DefaultMaxSteps
	MaxMemory   uint64        // bytes; 0: DefaultMaxMemory
	// Prefix scopes the lab's names (see Runtime.NetnsName): its
	// namespaces are PREFIX-NAME, its host links too, within 15 bytes,
	// and the lab by default PREFIX-RECIPE.
	Prefix string
	Faults fault.Injector // for tests; nil: the process's (see fault.Process)
	// Across makes the run one part of a lab across machines (see
	// Across); nil: a lab on one machine.
	Across Across
	// Connect, if set, is called with the parts (steps of op part) of a
	// plan that declares machines, before anything is changed: it
	// reaches them and returns the run's Across.
	Connect func(ctx context.Context, parts []journal.Step) (Across, error)
}

// parts are a plan's steps of op part, in its order.
func parts(plan *Runtime) []journal.Step {
	var out []journal.Step
	for s := range plan.Journal.All() {
		if s.Op == journal.OpPart {
			out = append(out, s)
		}
	}
	return out
}

// How far a run got: each stage may fail, and nothing is changed before
// StageRun.
const (
	StageInput  = "input"  // the lab's name, the recipe's file, the state directory
	StageSyntax = "syntax" // the recipe's syntax and names
	StagePlan   = "plan"   // the preflight, on a recording kernel
	StageClaim  = "claim"  // recording the lab and claiming its names
	StageRun    = "run"    // the run on the kernel, and its rollback or teardown
)

// LabName is the default lab name of a recipe: its base name (a
// containerlab file's, its name:).
func LabName(recipe string) string {
	if clab.Is(recipe) { // its name:
		if src, err := readCapped(recipe); err == nil {
			if name := clab.Name(src); name != "" {
				return name
			}
		}
		base := filepath.Base(recipe)
		return base[:strings.LastIndex(strings.ToLower(base), ".clab.")]
	}
	return strings.TrimSuffix(filepath.Base(recipe), filepath.Ext(recipe))
}

// defaultLab names the lab after the recipe (and the prefix) unless it
// has a name.
func (o *RunOptions) defaultLab() {
	if o.Lab == "" {
		o.Lab = LabName(o.Recipe)
		if o.Prefix != "" {
			o.Lab = o.Prefix + "-" + o.Lab
		}
	}
}

// Run runs a recipe as a lab and returns what happened.
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
func Run(ctx context.Context, o RunOptions) store.Result {
	o.defaultLab()
	r := store.Result{Lab: o.Lab, Stage: StageInput}
	if r.Err = store.ValidName(o.Lab); r.Err != nil {
		return r
	}
	src, err := o.Interp.ReadRecipe(ctx, o.Recipe)
	if err != nil {
		r.Err = err
		return r
	}
	// Syntax and name errors are found before anything is changed.
	r.Stage = StageSyntax
	if _, _, err := starlark.SourceProgramOptions(FileOptions, o.Recipe, src, o.Interp.Predeclared.Has); err != nil {
		r.Err = err
		return r
	}
	var plan *Runtime
	cancel := context.CancelFunc(func() {})
	defer func() { cancel() }()
	lr, err := o.begin(&r, func() ([]string, error) {
		if o.Timeout > 0 {
			ctx, cancel = context.WithTimeoutCause(ctx, o.Timeout, fmt.Errorf("timed out after %s (--timeout)", o.Timeout))
		}
		var err error
		if plan, err = o.preflight(ctx, o.Kernel); err != nil {
			// The names a lab across machines makes elsewhere are
			// checked there, once its machines are known: if
			// that is what this is, the plan that sees no names says.
			if o.Across != nil { // a part: its own names were checked
				return nil, err
			}
			blind, berr := o.preflight(ctx, nil)
			if berr != nil || len(blind.Machines()) == 0 {
				return nil, err
			}
			if o.Connect == nil {
				return nil, notAcross("this command", blind)
			}
			plan = blind
		}
		if o.Connect != nil && o.Across == nil && len(plan.Machines()) > 0 {
			// A lab across machines: each is reached and checked,
			// and the plan made again with each object on its
			// machine.
			if o.Across, err = o.Connect(ctx, parts(plan)); err != nil {
				return nil, err
			}
			if plan, err = o.preflight(ctx, o.Kernel); err != nil {
				return nil, err
			}
		}
		if o.Across == nil {
			if err := notAcross("this command", plan); err != nil {
				return nil, err
			}
		}
		return planClaims(plan), nil
	})
	if err != nil {
		r.Err = err
		return r
	}
	defer lr.lab.Unlock()
	defer lr.journal.Close()
	lr.journal.Reserve(plan.Journal.Len())
	rt := lr.rt
	rt.Ctx = ctx
	rt.Faults = o.Faults
	if rt.Faults == nil {
		rt.Faults = fault.Process
	}
	rec, _ := kernel.As[*kernel.Recorder](plan.k)
	rt.Planned = !rec.Observed
	rt.Progress = newProgress(o.Reporter, plan.Journal.Len())
	out := o.Stdout
	if o.Quiet {
		out = io.Discard // only errors
	}
	if rt.Log == nil { // -v shows each change as it is made, in the recipe's order
		rt.Pipeline()
	}
	r.Stage = StageRun
	if o.Across != nil {
		err = o.Across.Ready(plan.Journal.Steps()) // every machine checked, before any change
	}
	if err == nil {
		_, err = o.exec(ctx, rt, out)
	}
	err = lr.end(err)
	remove := o.Remove
	if o.Across != nil {
		// The lab's verdict: every part's ended well, or each rolls back.
		remove, err = o.Across.Finish(err, o.Remove)
	}
	defer rt.Close()

	r.Made, r.Err = lr.journal.Steps(), err
	switch {
	case err != nil && o.KeepOnError:
		lr.lab.Settle(&r, store.LabKept)
	case err != nil || remove:
		lr.rollback(&r, 0, true)
	default:
		lr.lab.Settle(&r, store.LabUp)
	}
	return r
}

// A labRun is a lab being made, by a run or a session: its record (whose
// lock it holds), its journal and the runtime that makes it.
type labRun struct {
	o       *RunOptions
	lab     *store.Lab
	journal *journal.Journal
	rt      *Runtime
}

// begin is the prelude of a run and of a session. It finishes the
// rollback of the labs whose runs died, telling o.Reporter of each; then
// plan (a run's preflight; nil for a session, which cannot know its names
// in advance) returns the names the lab will create outside its own
// namespaces; then, under the state lock, so that recovery never sees a
// half-made record and of two labs whose names overlap one wins, it
// records the lab, holding its lock, and claims those names. The lab is
// made through a claimer: a global name not claimed yet is claimed, and
// looked up, as it is made. r.Stage says how far begin got.
func (o *RunOptions) begin(r *store.Result, plan func() (claims []string, err error)) (*labRun, error) {
	r.Stage = StageInput
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	rep := reporter(o.Reporter)
	for _, rec := range store.Recover(o.StateDir, o.Kernel) {
		rep.Recovered(rec)
	}
	var claims []string
	if plan != nil {
		r.Stage = StagePlan
		var err error
		if claims, err = plan(); err != nil {
			return nil, err
		}
	}
	r.Stage = StageClaim
	recipe := "<repl>"
	if o.Recipe != "" {
		recipe = abs(o.Recipe)
	}
	lab, journal, err := createLab(o.StateDir, store.Info{
		Name: o.Lab, Recipe: recipe, Pid: os.Getpid(), Started: now(), Claims: claims,
	})
	if err != nil {
		return nil, err
	}
	r.Pid = lab.Info.Pid
	rt := New(o.Lab, store.NewClaimer(o.Kernel, o.StateDir, lab), journal)
	rt.ID, rt.Dir, rt.Argv, rt.Prefix = lab.Info.ID, lab.Dir, o.Args, o.Prefix
	if o.Across != nil {
		rt.SetAcross(o.Across)
	}
	if o.Verbose {
		rt.Log = o.Stderr
	}
	o.Interp.Reset() // what the preflight loaded is the preflight's
	return &labRun{o: o, lab: lab, journal: journal, rt: rt}, nil
}

// createLab records a lab and claims its names, atomically with respect
// to other nsruns.
func createLab(stateDir string, info store.Info) (*store.Lab, *journal.Journal, error) {
	unlock, err := store.LockState(stateDir)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	lab, journal, err := store.Create(stateDir, info)
	if err != nil {
		return nil, nil, err
	}
	if err := store.Claim(stateDir, info.Name, lab.Info.Claims); err != nil {
		journal.Close()
		lab.Info.Claims = nil
		lab.RemoveLocked()
		return nil, nil, err
	}
	return lab, journal, nil
}

// end ends the recipe (or a session's input) that ran with err: the
// changes it queued are made, its journal written, and every namespace it
// made must still be its own (see pinned). It tells the reporter, before
// any rollback begins, and returns the error the run ends with.
func (lr *labRun) end(err error) error {
	err = lr.rt.EndPipeline(err)
	if ferr := lr.journal.Flush(); ferr != nil && err == nil {
		err = errJournal(ferr)
	}
	if err == nil {
		err = pinned(lr.o.Kernel, lr.journal.Steps())
	}
	reporter(lr.o.Reporter).Ended(err)
	return err
}

// rollback undoes the changes after mark, newest first, into r. Then the
// lab is incomplete if something is left, and, at the end of its run or
// session (end), removed if it is all gone; a session's input rolled back
// leaves it as it was, even the session's first (mark 0).
func (lr *labRun) rollback(r *store.Result, mark int, end bool) {
	r.Undone, r.Failed = lr.rt.Rollback(mark)
	r.Spared = lr.rt.Spared
	r.Left = lr.journal.Steps()[mark:]
	switch {
	case len(r.Failed) > 0:
		lr.lab.Settle(r, store.LabIncomplete) // `nsrun down` tries again
	case end:
		lr.lab.RemoveInto(r)
	default:
		r.State = lr.lab.Info.State
	}
}

// thread returns a thread named name that runs on rt and prints to out,
// within the step and memory limits, cancelled with ctx; done ends it, and
// returns the error of a memory limit passed (see watchMemory).
func (o *RunOptions) thread(ctx context.Context, name string, rt *Runtime, out io.Writer) (thread *starlark.Thread, done func() error) {
	thread = o.Interp.NewThread(name, rt, out)
	steps := o.MaxSteps
	if steps == 0 {
		steps = DefaultMaxSteps
	}
	thread.SetMaxExecutionSteps(steps)
	stop := context.AfterFunc(ctx, func() { thread.Cancel(context.Cause(ctx).Error()) })
	watched := watchMemory(thread, o.maxMemory())
	return thread, func() error {
		stop()
		if err := watched(); err != nil {
			return fmt.Errorf("%s: %w", name, err) // passed at the end: no line to name
		}
		return nil
	}
}

// exec runs the recipe on rt, printing to out, within the step and memory
// limits and ctx.
func (o *RunOptions) exec(ctx context.Context, rt *Runtime, out io.Writer) (starlark.StringDict, error) {
	thread, done := o.thread(ctx, o.Recipe, rt, out)
	globals, err := o.Interp.ExecFile(thread, o.Recipe)
	if merr := done(); merr != nil && err == nil {
		err = merr
	}
	return globals, err
}

func (o *RunOptions) maxMemory() uint64 {
	if o.MaxMemory == 0 {
		return DefaultMaxMemory
	}
	return o.MaxMemory
}

// preflight runs the recipe on a recording kernel that starts with the
// names of real (the run's kernel; nil, none). An error is returned only if
// the real run would meet it too: one that comes after the recipe looked at
// the network (whose answers the recording kernel makes up) is left for the
// real run to find.
func (o *RunOptions) preflight(ctx context.Context, real kernel.Kernel) (*Runtime, error) {
	rec := kernel.NewRecorder()
	rec.Real, rec.Quiet = real, true
	j, _ := journal.Open("")
	rt := New(o.Lab, rec, j)
	rt.Ctx, rt.Argv, rt.Prefix = ctx, o.Args, o.Prefix
	if o.Across != nil {
		rt.SetAcross(o.Across)
	}
	_, err := o.exec(ctx, rt, io.Discard)
	rt.Close()
	if err != nil && !rec.Observed {
		return nil, err
	}
	return rt, nil
}

// planClaims lists the global names a plan creates: its namespaces, and
// its links in the host namespace.
func planClaims(plan *Runtime) []string {
	seen := map[string]bool{}
	add := func(kind, name string) { seen[store.ClaimName(kind, name)] = true }
	for s := range plan.Journal.All() {
		switch {
		case s.Away: // another machine's name
		case s.Op == journal.OpNetns:
			add("netns", s.Name)
		case s.Op == journal.OpLink:
			if s.NS == kernel.Host {
				add("link", s.Name)
			}
			if s.PeerName != "" && s.PeerNS == kernel.Host {
				add("link", s.PeerName)
			}
		case s.Op == journal.OpMove && s.New == kernel.Host:
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
// the recipe went on in a namespace no name reaches — and the run, the
// apply or the REPL input must fail. Every namespace of the lab is checked,
// not only those the run's steps went into: a recipe's commands and checks
// enter namespaces without a step, and an apply takes the lab's as made.
// Only a kernel with namespace paths (the real one) is checked.
func pinned(k kernel.Kernel, steps []journal.Step) error {
	p, ok := kernel.As[kernel.Pather](k)
	if !ok {
		return nil
	}
	removed := map[string]int{} // the last removal of each namespace the lab removed
	for i, s := range steps {
		if s.Op == journal.OpNetnsDel {
			removed[s.Name] = i
		}
	}
	for i, s := range steps {
		if del, ok := removed[s.Name]; s.Op != journal.OpNetns || s.Away || ok && i < del {
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

// IsFail reports whether err comes from the recipe's own fail().
func IsFail(err error) bool {
	var ev *starlark.EvalError
	for e := err; errors.As(e, &ev); e = ev.Unwrap() {
		if len(ev.CallStack) > 0 && ev.CallStack.At(0).Name == "fail" {
			return true
		}
	}
	return false
}

// ErrorAt returns the message of a run's error as its backtrace ends (see
// Backtrace) and the recipe position it names (file:line:col): the call
// that failed, or that asked for the queued change that failed, in the
// innermost Starlark frame; a syntax or name error's own. The position is
// "" where there is none (a limit passed at the recipe's end, a file that
// cannot be read).
func ErrorAt(err error) (msg, pos string) {
	var ce *changeError
	if errors.As(err, &ce) {
		return ce.Error(), stackPos(ce.stack)
	}
	if inner := innermost(err); inner != nil {
		return inner.Msg, stackPos(inner.CallStack)
	}
	var se syntax.Error
	if errors.As(err, &se) {
		return se.Msg, se.Pos.String()
	}
	var re resolve.ErrorList
	if errors.As(err, &re) && len(re) > 0 {
		return re[0].Msg, re[0].Pos.String() // the first, as its Error() has it
	}
	return err.Error(), ""
}

// stackPos is the position of the innermost frame of stack in a recipe or
// library (not in a builtin).
func stackPos(stack starlark.CallStack) string {
	for i := range stack {
		if fr := stack.At(i); fr.Pos.IsValid() && fr.Pos.Filename() != "<builtin>" {
			return fr.Pos.String()
		}
	}
	return ""
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
	return planRecipe(ctx, o, false)
}

// planRecipe is Plan; quiet, the kernel keeps no Log (see
// kernel.Recorder.Quiet): an apply needs only the plan's steps.
func planRecipe(ctx context.Context, o RunOptions, quiet bool) (*kernel.Recorder, *Runtime, error) {
	o.defaultLab()
	rec := kernel.NewRecorder()
	rec.Quiet = quiet
	j, _ := journal.Open("")
	rt := New(o.Lab, rec, j)
	rt.ID, rt.Ctx, rt.Argv, rt.Prefix = "plan", ctx, o.Args, o.Prefix
	o.Interp = planInterp(o.Interp, rec)
	out := o.Stdout
	if out == nil {
		out = io.Discard
	}
	_, err := o.exec(ctx, rt, out)
	rt.Close()
	return rec, rt, err
}

// planInterp is in with a fail() that, once the plan has made up an answer
// of the network, does not end the plan: the recipe's check of that answer
// is one a live run makes, and the plan notes where it assumed the check
// passes and goes on.
func planInterp(in *Interp, rec *kernel.Recorder) *Interp {
	p := &Interp{Predeclared: maps.Clone(in.Predeclared), Std: in.Std, Path: in.Path}
	fail := starlark.Universe["fail"]
	p.Predeclared["fail"] = starlark.NewBuiltin("fail", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if !rec.Observed {
			return starlark.Call(thread, fail, args, kwargs)
		}
		words := make([]string, len(args))
		for i, a := range args {
			if s, ok := starlark.AsString(a); ok {
				words[i] = s
			} else {
				words[i] = a.String()
			}
		}
		rec.Note(fmt.Sprintf("assumed at %s: the check passes (a live run checks what the plan made up: %s)", callerPos(thread), strings.Join(words, " ")))
		return starlark.None, nil
	})
	return p
}
