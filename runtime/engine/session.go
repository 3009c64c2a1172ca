package engine

import (
	"context"
	"fmt"
	"maps"
	"os"
	"sort"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
	"github.com/nsrun/nsrun/runtime/store"
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
	Lab     *store.Lab
	RT      *Runtime
	Globals starlark.StringDict
	o       RunOptions
	journal *journal.Journal
	lr      *labRun
	// attached: the session is on a lab that was up before it (see
	// AttachSession), which it leaves up.
	attached bool
	claims   interface{ Drop([]string) error }
}

// AttachSession opens a session on the lab o.Lab, which is up: its
// namespaces and links are the session's to change (found by name with
// ns() and link()), each input a transaction on it, as an apply is (a
// session that dies midway is undone back to the input's start by the next
// nsrun); Close leaves the lab up. The session holds the lab's lock.
func AttachSession(o RunOptions) (*Session, error) {
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	rep := reporter(o.Reporter)
	for _, rec := range store.Recover(o.StateDir, o.Kernel) {
		rep.Recovered(rec)
	}
	lab, err := store.Open(o.StateDir, o.Lab)
	if err != nil {
		return nil, err
	}
	if err := lab.TryLock(); err != nil {
		return nil, err
	}
	if lab.Info.State != store.LabUp {
		lab.Unlock()
		return nil, fmt.Errorf("lab %q is %s: a session opens only on a lab that is up (see `nsrun down`)", o.Lab, lab.Info.State)
	}
	j, err := journal.Reopen(lab.JournalPath())
	if err != nil {
		lab.Unlock()
		return nil, fmt.Errorf("lab %q: reading its journal: %w", o.Lab, err)
	}
	if err := oneMachine(o.Lab, "a session", j.Steps()); err != nil {
		j.Close()
		lab.Unlock()
		return nil, err
	}
	claims := store.NewClaimer(o.Kernel, o.StateDir, lab)
	rt := New(o.Lab, claims, j)
	rt.ID, rt.Dir, rt.Argv, rt.Prefix = lab.Info.ID, lab.Dir, o.Args, o.Prefix
	if o.Verbose {
		rt.Log = o.Stderr
	}
	rt.ownJournal()
	s := &Session{o: o, Lab: lab, RT: rt, journal: j, attached: true, claims: claims}
	s.lr = &labRun{o: &s.o, lab: lab, journal: j, rt: rt}
	s.Globals = maps.Clone(o.Interp.Predeclared)
	return s, nil
}

// Attached reports whether the session is on a lab that was up before it.
func (s *Session) Attached() bool { return s.attached }

// begin starts an input at mark: on an attached lab, the lab is recorded
// as changing from mark, for recovery to undo if the session dies.
func (s *Session) begin(mark int) error {
	if !s.attached {
		return nil
	}
	if s.Lab.Info.State != store.LabUp { // an input's rollback failed
		return fmt.Errorf("lab %q is %s: an earlier input could not be rolled back whole (see `nsrun check`, `nsrun down`)", s.o.Lab, s.Lab.Info.State)
	}
	s.Lab.Info.Mark, s.Lab.Info.Applied = mark, nil
	if err := s.Lab.SetState(store.LabApplying); err != nil {
		return fmt.Errorf("recording the lab: %w", err)
	}
	return nil
}

// OpenSession records the session's lab as Run does (with the same
// prelude: see begin), so that `nsrun ls` shows it and recovery undoes it
// if the session dies. Its names, not known in advance, are claimed as
// they are made (see claimer).
func OpenSession(o RunOptions) (*Session, error) {
	if o.Lab == "" {
		o.Lab = "repl"
		if o.Recipe != "" {
			o.Lab = LabName(o.Recipe)
		}
		if o.Prefix != "" {
			o.Lab = o.Prefix + "-" + o.Lab
		}
	}
	if err := store.ValidName(o.Lab); err != nil {
		return nil, err
	}
	s := &Session{o: o}
	lr, err := s.o.begin(&store.Result{}, nil)
	if err != nil {
		return nil, err
	}
	s.lr, s.Lab, s.RT, s.journal = lr, lr.lab, lr.rt, lr.journal
	// A REPL chunk sees only its globals (and Starlark's universe): the
	// builtins start among them.
	s.Globals = maps.Clone(o.Interp.Predeclared)
	return s, nil
}

// Predeclared returns the names every input sees besides the globals.
func (s *Session) Predeclared() starlark.StringDict { return s.o.Interp.Predeclared }

// RunRecipe runs the session's recipe, whose globals are then in scope. If
// it fails, its changes are rolled back: the result says what happened.
func (s *Session) RunRecipe(ctx context.Context) store.Result {
	mark := s.journal.Len()
	if err := s.begin(mark); err != nil {
		return store.Result{Lab: s.o.Lab, State: s.Lab.Info.State, Err: err}
	}
	s.RT.Ctx = ctx
	globals, err := s.o.exec(ctx, s.RT, s.o.Stdout)
	r := s.end(mark, err)
	if r.Err == nil {
		maps.Copy(s.Globals, globals)
	}
	return r
}

// Eval runs one input, parsed with ReplOptions, as a transaction: the value
// of a lone expression is returned (None otherwise); if the input fails,
// what it changed is rolled back and the globals it assigned are dropped
// (a value it mutated in place stays mutated). The result says what the
// input made, and, if it failed, why and what was rolled back.
func (s *Session) Eval(ctx context.Context, f *syntax.File) (starlark.Value, store.Result) {
	mark := s.journal.Len()
	if err := s.begin(mark); err != nil {
		return nil, store.Result{Lab: s.o.Lab, State: s.Lab.Info.State, Err: err}
	}
	s.RT.Ctx = ctx
	thread, done := s.o.thread(ctx, "repl", s.RT, s.o.Stdout)
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
	r := s.end(mark, err)
	if r.Err != nil {
		return nil, r
	}
	s.Globals = globals
	return v, r
}

// end ends an input that began at mark and ran with err (see labRun.end),
// and rolls it back if it failed.
func (s *Session) end(mark int, err error) store.Result {
	err = s.lr.end(err)
	r := store.Result{Lab: s.o.Lab, State: s.Lab.Info.State, Made: s.journal.Steps()[mark:], Err: err}
	if err != nil {
		s.lr.rollback(&r, mark, false)
	}
	if s.attached && r.State == store.LabApplying { // the input is over
		if r.Err != nil { // the names it claimed are free again
			if err := s.claims.Drop(s.Lab.Info.Applied); err != nil {
				r.Spared = append(r.Spared, fmt.Errorf("releasing the input's names: %w", err))
			}
		}
		s.Lab.Info.Mark, s.Lab.Info.Applied = 0, nil
		s.Lab.Settle(&r, store.LabUp)
	}
	return r
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
		case journal.OpNetns:
			ns[st.Name] = true
		case journal.OpLink:
			ls[st.Name] = true
			if st.PeerName != "" {
				ls[st.PeerName] = true
			}
		}
	}
	return sortedKeys(ns), sortedKeys(ls)
}

// LinksIn returns the names of the links the session's lab has in
// namespace ns ("host" or a name) now, after its moves, and lo in a
// namespace of its own, for completion.
func (s *Session) LinksIn(ns string) []string {
	if ns == "host" {
		ns = kernel.Host
	}
	st := model.Replay(s.journal.Steps(), false)
	names := map[string]bool{}
	if st.HasNetns(ns) {
		names["lo"] = true
	}
	for _, l := range st.Links {
		if l.At.NS == ns && l.Removed < 0 {
			names[l.At.Name] = true
		}
	}
	return sortedKeys(names)
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Close ends the session: unless keep, it tears the lab down, newest
// first; with keep the lab stays up, for `nsrun down` to remove. It
// returns what it did.
func (s *Session) Close(keep bool) store.Result {
	defer s.Lab.Unlock()
	defer s.journal.Close()
	r := store.Result{Lab: s.o.Lab, Made: s.journal.Steps()}
	if s.attached && s.Lab.Info.State != store.LabUp {
		r.State = s.Lab.Info.State // left for `nsrun down`
		return r
	}
	if keep || s.attached {
		s.Lab.Settle(&r, store.LabUp)
		return r
	}
	s.lr.rollback(&r, 0, true)
	return r
}
