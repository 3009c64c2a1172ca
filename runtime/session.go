package runtime

import (
	"context"
	"fmt"
	"maps"
	"os"
	"sort"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// ReplOptions are FileOptions for REPL input, except that load() binds
// globally, so that what one input loads is in scope in the next (as in
// go.starlark.net/repl).
var ReplOptions = func() *syntax.FileOptions {
	o := *FileOptions
	o.LoadBindsGlobally = true
	return &o
}()

// Session is a lab worked on interactively (nsrun repl): one runtime and
// one set of globals for the whole session, and each input its own
// transaction — an input that fails is rolled back, and earlier inputs'
// work stays.
type Session struct {
	Lab     *Lab
	RT      *Runtime
	Globals starlark.StringDict
	o       RunOptions
	journal *Journal
}

// OpenSession records the session's lab as Run does (under the state lock,
// holding the lab's lock, so that `nsrun ls` shows it and recovery undoes
// it if the session dies). Its names, not known in advance, are claimed
// as they are made (see claimer).
func OpenSession(o RunOptions) (*Session, error) {
	if o.Lab == "" {
		o.Lab = "repl"
		if o.Recipe != "" {
			o.Lab = LabName(o.Recipe)
		}
	}
	if err := ValidLabName(o.Lab); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	Recover(o.StateDir, o.Kernel, o.Stderr)
	unlock, err := lockState(o.StateDir)
	if err != nil {
		return nil, err
	}
	recipe := "<repl>"
	if o.Recipe != "" {
		recipe = abs(o.Recipe)
	}
	lab, journal, err := CreateLab(o.StateDir, LabInfo{Name: o.Lab, Recipe: recipe, Pid: os.Getpid(), Started: now()})
	unlock()
	if err != nil {
		return nil, err
	}
	rt := New(o.Lab, newClaimer(o.Kernel, o.StateDir, lab), journal)
	rt.ID, rt.Dir, rt.Argv = lab.Info.ID, lab.Dir, o.Args
	if o.Verbose {
		rt.Log = o.Stderr
	}
	o.Interp.Reset()
	// A REPL chunk sees only its globals (and Starlark's universe): the
	// builtins start among them.
	globals := maps.Clone(o.Interp.Predeclared)
	return &Session{Lab: lab, RT: rt, Globals: globals, o: o, journal: journal}, nil
}

// Predeclared returns the names every input sees besides the globals.
func (s *Session) Predeclared() starlark.StringDict { return s.o.Interp.Predeclared }

// thread returns a thread for one input, cancelled with ctx, within the
// step and memory limits; done ends it and returns the error of a memory
// limit passed (see watchMemory).
func (s *Session) thread(ctx context.Context, name string) (thread *starlark.Thread, done func() error) {
	s.RT.Ctx = ctx
	thread = s.o.Interp.NewThread(name, s.RT, s.o.Stdout)
	steps := s.o.MaxSteps
	if steps == 0 {
		steps = DefaultMaxSteps
	}
	thread.SetMaxExecutionSteps(steps)
	stop := context.AfterFunc(ctx, func() { thread.Cancel(context.Cause(ctx).Error()) })
	watched := watchMemory(thread, s.o.maxMemory())
	return thread, func() error {
		stop()
		if err := watched(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
}

// RunRecipe runs the session's recipe, whose globals are then in scope. If
// it fails, its backtrace is printed and its changes are rolled back.
func (s *Session) RunRecipe(ctx context.Context) error {
	mark := s.journal.Len()
	thread, done := s.thread(ctx, s.o.Recipe)
	globals, err := s.o.Interp.ExecFile(thread, s.o.Recipe)
	if merr := done(); merr != nil && err == nil {
		err = merr
	}
	if ferr := s.journal.Flush(); ferr != nil && err == nil {
		err = errJournal(ferr)
	}
	if err == nil {
		err = pinned(s.o.Kernel, s.journal.Steps())
	}
	if err != nil {
		s.fail(err, mark)
		return err
	}
	maps.Copy(s.Globals, globals)
	return nil
}

// Eval runs one input, parsed with ReplOptions, as a transaction: the value
// of a lone expression is returned (None otherwise); if the input fails,
// its backtrace is printed, what it changed is rolled back and the globals
// it assigned are dropped (a value it mutated in place stays mutated).
func (s *Session) Eval(ctx context.Context, f *syntax.File) (starlark.Value, error) {
	mark := s.journal.Len()
	thread, done := s.thread(ctx, "repl")
	globals := maps.Clone(s.Globals)
	v, err := starlark.Value(starlark.None), error(nil)
	if expr := soleExpr(f); expr != nil {
		v, err = starlark.EvalExprOptions(f.Options, thread, expr, globals)
	} else {
		err = starlark.ExecREPLChunk(f, thread, globals)
	}
	if merr := done(); merr != nil && err == nil {
		err = merr
	}
	if ferr := s.journal.Flush(); ferr != nil && err == nil {
		err = errJournal(ferr)
	}
	if err == nil {
		err = pinned(s.o.Kernel, s.journal.Steps())
	}
	if err != nil {
		s.fail(err, mark)
		return nil, err
	}
	s.Globals = globals
	return v, nil
}

func (s *Session) fail(err error, mark int) {
	fmt.Fprintln(s.o.Stderr, Backtrace(err))
	undone, failed := s.RT.Rollback(mark)
	ReportSpared(s.o.Stderr, s.RT.Spared)
	if report(s.o.Stderr, "rolled back", undone, failed) != ExitOK {
		s.Lab.SetState(LabIncomplete) // the session's end, or `down`, tries again
	}
}

func soleExpr(f *syntax.File) syntax.Expr {
	if len(f.Stmts) == 1 {
		if stmt, ok := f.Stmts[0].(*syntax.ExprStmt); ok {
			return stmt.X
		}
	}
	return nil
}

// Names returns the names of the namespaces and links the lab has now
// (links: "lo" too), sorted, for completion.
func (s *Session) Names() (netns, links []string) {
	ns, ls := map[string]bool{}, map[string]bool{"lo": true}
	for _, st := range s.journal.Steps() {
		switch st.Op {
		case OpNetns:
			ns[st.Name] = true
		case OpLink:
			ls[st.Name] = true
			if st.PeerName != "" {
				ls[st.PeerName] = true
			}
		}
	}
	return sortedKeys(ns), sortedKeys(ls)
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Close ends the session: unless keep, it tears the lab down, newest first;
// with keep the lab stays up, for `nsrun down` to remove. It returns the
// exit code.
func (s *Session) Close(keep bool) int {
	defer s.Lab.Unlock()
	defer s.journal.Close()
	if keep {
		if err := s.Lab.SetState(LabUp); err != nil {
			fmt.Fprintf(s.o.Stderr, "nsrun: recording the lab: %v\n", err)
		}
		fmt.Fprintf(s.o.Stderr, "nsrun: lab %q is up (%s); remove it with `nsrun down %s`\n", s.o.Lab, Plural(s.journal.Len(), "change"), s.o.Lab)
		return ExitOK
	}
	undone, failed := s.RT.Rollback(0)
	ReportSpared(s.o.Stderr, s.RT.Spared)
	if code := report(s.o.Stderr, "removed", undone, failed); code != ExitOK {
		s.Lab.SetState(LabIncomplete)
		return code
	}
	s.Lab.Remove()
	return ExitOK
}
