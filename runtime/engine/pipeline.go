package engine

import (
	"context"
	"sync"

	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"go.starlark.net/starlark"
)

// A run's changes can be pipelined: the recipe runs ahead while a worker
// makes the changes it asked for, in order, on the kernel. Building a host
// costs the kernel about a millisecond and the recipe a fraction of that;
// on a machine with two cores the two overlap, where one after the other
// they would add up.
//
// Only changes whose builtin needs nothing back from the kernel go through
// the pipeline (Later): a namespace, a link, up/down, a port, an address.
// Their intent records are written before they are queued, as for any
// change, and their done records by the worker once made. Everything else
// that touches the kernel (Change, Kernel) first waits for the queue to be
// made. A change that fails stops the worker: the changes queued after it
// are voided, and the run learns of the failure, with the recipe position
// of the change that failed, at its next change or at its end.

// Work makes a change on k and fills in what its done record carries. A
// queued change's runs on the worker: it must use k, never Runtime.Kernel
// (which would wait for the worker itself).
type Work func(k kernel.Kernel, s *journal.Step) error

// maxQueued bounds how far the recipe runs ahead of the kernel.
const maxQueued = 4096

type job struct {
	seq    int
	intent journal.Step
	work   Work
	thread *starlark.Thread   // the recipe's, stopped if the change fails
	stack  starlark.CallStack // where the recipe asked for the change
	n      int                // the change's number, for fault injection
}

type pipeline struct {
	mu      sync.Mutex
	cond    *sync.Cond // the queue or the number pending changed
	queue   []job
	pending int // queued or being made
	err     error
	closed  bool
}

// Pipeline makes the run's later changes (see Later) go through a worker
// until EndPipeline.
func (rt *Runtime) Pipeline() {
	p := &pipeline{}
	p.cond = sync.NewCond(&p.mu)
	rt.pipe = p
	go rt.work(p)
}

// Later makes a change like Change, but when the run is pipelined it only
// queues it and returns: an error the change meets is returned by a later
// call of Later, Change or Sync. work must be self-contained: whatever it
// uses of the recipe's values is copied before the call.
func (rt *Runtime) Later(thread *starlark.Thread, s journal.Step, work Work) error {
	p := rt.pipe
	if p == nil {
		return rt.Change(thread, s, work)
	}
	rt.place(&s)
	if _, ok := rt.adopt(s); ok {
		return nil
	}
	var stack starlark.CallStack
	if thread != nil {
		s.Pos, stack = callerPos(thread), thread.CallStack()
	}
	p.mu.Lock()
	for len(p.queue) >= maxQueued && p.err == nil {
		p.cond.Wait()
	}
	err := p.err
	p.mu.Unlock()
	if err != nil {
		return err
	}
	seq, err := rt.Journal.Intend(s)
	if err != nil {
		return errJournal(err)
	}
	rt.own(s)
	n := 0
	if rt.Faults != nil {
		rt.changes++
		n = rt.changes
	}
	p.mu.Lock()
	p.queue = append(p.queue, job{seq: seq, intent: s, work: work, thread: thread, stack: stack, n: n})
	p.pending++
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// Sync waits until every queued change is made, and returns the error of
// the first that failed, if one did.
func (rt *Runtime) Sync() error {
	p := rt.pipe
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.pending > 0 {
		p.cond.Wait()
	}
	return p.err
}

// work is the worker: it makes the queued changes in order, in batches.
func (rt *Runtime) work(p *pipeline) {
	var batch []job
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && !p.closed {
			p.cond.Broadcast() // pending may have reached 0
			p.cond.Wait()
		}
		if p.closed && len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		batch, p.queue = p.queue, batch[:0]
		p.cond.Broadcast() // Later may wait for room
		failed := p.err != nil
		p.mu.Unlock()
		for i := range batch {
			j := &batch[i]
			var err error
			if !failed {
				err = rt.make(j)
			} else {
				// The run's error is the first failure's. A void record
				// that cannot be written leaves an intent, whose undo is
				// harmless, and the journal's failure shows again when
				// the rollback rewrites it.
				rt.Journal.Void(j.seq)
				rt.disown(j.intent)
			}
			p.mu.Lock()
			if err != nil && p.err == nil {
				p.err, failed = err, true
			}
			p.pending--
			p.mu.Unlock()
			*j = job{} // the batch's array is reused: let go of what j holds
		}
	}
}

// make makes a queued change and journals it done, or void if it was not
// made. A change that fails stops the recipe.
func (rt *Runtime) make(j *job) error {
	if cause := context.Cause(rt.Ctx); cause != nil {
		// Interrupted or timed out: the context stops the recipe, and
		// nothing more is made.
		rt.disown(j.intent)
		return rt.void(j.seq, cause)
	}
	var err error
	if j.n > 0 {
		if err = rt.Faults(fault.Before, j.n); err == nil {
			defer rt.Faults(fault.After, j.n)
		}
	}
	s := j.intent
	if err == nil {
		err = j.work(rt.k, &s)
		away(&s)
	}
	if err == nil && j.n > 0 {
		rt.Faults(fault.Made, j.n)
	}
	if err != nil {
		err = rt.void(j.seq, err)
		rt.disown(j.intent)
	} else if err = rt.record(j.seq, j.intent, s); err == nil {
		return nil
	} // else made, and covered by its intent
	if j.thread != nil { // it stops at once: nothing more of it runs on a lab half made
		j.thread.Cancel("a change it asked for failed")
	}
	return &changeError{err, j.stack}
}

// A changeError is the failure of a queued change, with the recipe's call
// stack when it asked for the change (see Backtrace).
type changeError struct {
	err   error
	stack starlark.CallStack
}

func (e *changeError) Error() string { return e.err.Error() }

func (e *changeError) Unwrap() error { return e.err }

// EndPipeline waits for the queued changes to be made and ends the
// pipeline: the run's changes are made at once from then on. It returns the
// run's error, given err, the recipe's own: a queued change that failed
// came before anything the recipe did after asking for it, and its error
// is the run's; but a run interrupted or timed out fails for that.
func (rt *Runtime) EndPipeline(err error) error {
	p := rt.pipe
	if p == nil {
		return err
	}
	perr := rt.Sync()
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	rt.pipe = nil
	if perr != nil && (err == nil || rt.Ctx.Err() == nil) {
		return perr
	}
	return err
}
