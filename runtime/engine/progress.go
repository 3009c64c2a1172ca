package engine

import (
	"sync"

	"github.com/nsrun/nsrun/runtime/store"
)

// A Reporter is told what a run or a session does as it does it, for its
// caller to show: the command line draws a progress line and prints a
// failed recipe's backtrace before its rollback begins. Everything else is
// in the Result returned at the end; the engine itself prints only the
// recipe's print()s and, with -v, each change. A nil Reporter hears
// nothing.
type Reporter interface {
	// Recovered tells of the lab of a run that died, rolled back (or
	// found unverified and left alone) before this run or session began.
	Recovered(store.Result)
	// Made tells that made changes are made, of the planned ones (the
	// preflight's count; a recipe may make more than it planned, when it
	// loops on what it observed).
	Made(made, planned int)
	// Ended tells that the recipe, or a session's input, has ended, with
	// the error it failed with (nil if it succeeded). Its rollback, or the
	// lab's teardown, is still to come.
	Ended(err error)
}

// reporter returns r, or a Reporter that hears nothing.
func reporter(r Reporter) Reporter {
	if r == nil {
		return silent{}
	}
	return r
}

type silent struct{}

func (silent) Recovered(store.Result) {}

func (silent) Made(int, int) {}

func (silent) Ended(error) {}

// Progress counts a run's changes as they are made, for its Reporter.
type Progress struct {
	mu            sync.Mutex
	made, planned int
	rep           Reporter
}

// newProgress returns a count of planned changes for rep, or nil (which
// counts nothing) if there is no one to tell.
func newProgress(rep Reporter, planned int) *Progress {
	if rep == nil {
		return nil
	}
	return &Progress{rep: rep, planned: planned}
}

// Add counts n changes made. Changes are made one at a time (by the
// pipeline's worker, or by the recipe once it has waited for the worker),
// but the lock keeps the counts in order whoever makes them.
func (p *Progress) Add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.made += n
	p.rep.Made(p.made, p.planned)
}
