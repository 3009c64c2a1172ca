package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
	"github.com/nsrun/nsrun/runtime/store"
	"github.com/nsrun/nsrun/runtime/undo"
	"go.starlark.net/starlark"
)

// Runtime is the state of one run.
type Runtime struct {
	Lab     string
	ID      string // this instance of the lab: tags its processes
	Dir     string // the lab's record directory ("" for none): a run's temporary files go there
	Journal *journal.Journal
	Out     io.Writer // where print() writes
	Argv    []string  // the recipe's arguments

	Log      io.Writer       // for -v; nil: quiet
	Progress *Progress       // on a terminal; nil: none
	Ctx      context.Context // cancelled on SIGINT/SIGTERM

	Faults fault.Injector // consulted at each change (see package fault); nil: none
	// Planned: a preflight ran the whole recipe against the machine's names
	// and claimed those it creates, so a name the lab creates outside its
	// own namespaces need not be looked up again before it is created.
	Planned bool
	changes int

	k    kernel.Kernel // see Kernel
	pipe *pipeline     // nil: every change is made at once (see Later)

	closers []io.Closer // in-process helpers of the run (captures, ...)

	// Spared holds what the last rollback found in the place of the lab's
	// objects and left alone (see undo.Result).
	Spared []error

	mu    sync.Mutex
	state *model.State   // what the run has made (or queued), where it is now
	owned int            // the steps applied to state
	memo  map[string]any // see Memo
	// The namespaces whose links, and whose IPv6 addresses, the run
	// changed since it last waited for them to be operational (see
	// Operational).
	unsettled, tentative map[string]bool
}

// New returns a runtime for lab on kernel k.
func New(lab string, k kernel.Kernel, j *journal.Journal) *Runtime {
	return &Runtime{
		Lab: lab, ID: store.NewID(), k: k, Journal: j,
		state: model.New(true),
		Ctx:   context.Background(),
	}
}

// Kernel returns the run's kernel to look at the network or act on it
// outside a change, once the changes queued before are made (see Later); or
// the error of the one that failed: the lab is not what the recipe made it,
// and nothing more must happen in it.
func (rt *Runtime) Kernel() (kernel.Kernel, error) {
	if err := rt.Sync(); err != nil {
		return nil, err
	}
	return rt.k, nil
}

const threadKey = "nsrun.runtime"

// Attach makes rt the runtime of thread's builtins.
func (rt *Runtime) Attach(thread *starlark.Thread) { thread.SetLocal(threadKey, rt) }

// FromThread returns the runtime of a builtin's thread.
func FromThread(thread *starlark.Thread) (*Runtime, error) {
	if rt, ok := thread.Local(threadKey).(*Runtime); ok {
		return rt, nil
	}
	return nil, fmt.Errorf("internal error: no nsrun runtime on this thread")
}

// Tag is the alias every link of the lab carries: its ownership mark.
func (rt *Runtime) Tag() string { return store.TagPrefix + rt.Lab }

// Change makes one change to the kernel, through fn (given the kernel), and
// journals it: an intent record before (so that a run killed in between
// leaves enough to undo it), a done record after, with what fn filled in (an
// inode, a pid); a done record that only confirms its intent may go out with
// the next record (see Journal). Changes queued before (see Later) are made first;
// if one of them failed, its error is returned and fn is not called.
// The step carries the position of the recipe call that made it. If fn
// fails, the intent is voided and fn's error returned as is.
func (rt *Runtime) Change(thread *starlark.Thread, s journal.Step, fn Work) error {
	if err := rt.Sync(); err != nil {
		return err
	}
	if thread != nil {
		s.Pos = callerPos(thread)
	}
	seq, err := rt.Journal.Intend(s)
	if err != nil {
		return errJournal(err)
	}
	n := 0
	if rt.Faults != nil {
		rt.changes++
		n = rt.changes
		if err := rt.Faults(fault.Before, n); err != nil {
			return rt.void(seq, err)
		}
		defer rt.Faults(fault.After, n)
	}
	intent := s
	if err := fn(rt.k, &s); err != nil {
		return rt.void(seq, err)
	}
	if n > 0 {
		rt.Faults(fault.Made, n)
	}
	rt.own(s)
	return rt.record(seq, intent, s)
}

func errJournal(err error) error { return fmt.Errorf("writing the journal: %w", err) }

// void journals change seq as not made, since it failed with err, and
// returns err, with the journal's error if the record could not be written
// (the change then reads as an intent: its undo is harmless either way).
func (rt *Runtime) void(seq int, err error) error {
	if verr := rt.Journal.Void(seq); verr != nil {
		return errors.Join(err, errJournal(verr))
	}
	return err
}

// own records what the run owns once step s is made (see model.State).
func (rt *Runtime) own(s journal.Step) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.state.Apply(rt.owned, s)
	rt.owned++
	rt.touched(s)
}

// disown forgets what the run owned through step s: one undone, or one
// queued and not made (Later owns at once what it queues).
func (rt *Runtime) disown(s journal.Step) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.state.Forget(s)
}

// record journals change seq, made from intent, as done (as s says).
func (rt *Runtime) record(seq int, intent, s journal.Step) error {
	rt.Progress.Add(1)
	if rt.Log != nil {
		fmt.Fprintf(rt.Log, "+ %s (%s)\n", s, s.Pos)
	}
	if err := rt.Journal.Done(seq, intent, s); err != nil {
		return errJournal(err)
	}
	return nil
}

func callerPos(thread *starlark.Thread) string {
	for i := 0; i < thread.CallStackDepth(); i++ {
		if fr := thread.CallFrame(i); fr.Pos.IsValid() && fr.Pos.Filename() != "<builtin>" {
			return fr.Pos.String()
		}
	}
	return "?"
}

// OwnsNetns reports whether the run created namespace ns.
func (rt *Runtime) OwnsNetns(ns string) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.state.HasNetns(ns)
}

// OwnsLink reports whether the run may change a link: one it created, or any
// link inside a namespace it created.
func (rt *Runtime) OwnsLink(ns, name string) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	_, made := rt.state.MadeLink(ns, name)
	return made || rt.state.HasNetns(ns)
}

// MadeLink reports whether the lab created link name in ns (or moved it
// there) and has it still.
func (rt *Runtime) MadeLink(ns, name string) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	_, made := rt.state.MadeLink(ns, name)
	return made
}

// Segment returns the links that share a layer-2 segment with link name in
// ns, as the run has made them (see model.State.Segment).
func (rt *Runtime) Segment(ns, name string) []model.LinkKey {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.state.Segment(model.LinkKey{NS: ns, Name: name})
}

// Addrs returns the addresses the run gave link name in ns.
func (rt *Runtime) Addrs(ns, name string) []netip.Prefix {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.state.AddrsOf(model.LinkKey{NS: ns, Name: name})
}

// Link returns the link the run made that is at ns, name now (see
// model.State).
func (rt *Runtime) Link(ns, name string) (*model.Link, bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.state.MadeLink(ns, name)
}

// Links returns the links the run made that it has still, as they are now
// (see model.State.InOrder), each a copy.
func (rt *Runtime) Links() []model.Link {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var out []model.Link
	for _, l := range rt.state.InOrder() {
		out = append(out, *l)
	}
	return out
}

// Stacked returns the links the run made on link name in ns (macvlans,
// vlans) that are there still.
func (rt *Runtime) Stacked(ns, name string) []*model.Link {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.state.Stacked(model.LinkKey{NS: ns, Name: name})
}

// Routes returns the run's routes in ns as it has left them (added, not
// removed or replaced since).
func (rt *Runtime) Routes(ns string) []kernel.Route {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.state.Routes(ns)
}

// Memo returns the run's value for key, made by mk the first time it is
// asked for: what builtins keep for the rest of a run (the DHCP servers a
// plan started, say).
func (rt *Runtime) Memo(key string, mk func() any) any {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	v, ok := rt.memo[key]
	if !ok {
		if rt.memo == nil {
			rt.memo = map[string]any{}
		}
		v = mk()
		rt.memo[key] = v
	}
	return v
}

// MAC derives a link's address from the lab, namespace and link name:
// locally administered and unicast, the same on every run.
func (rt *Runtime) MAC(ns, name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(rt.Lab + "\x00" + ns + "\x00" + name))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// AddCloser registers something the run keeps open in-process (a capture, a
// socket); it is closed, newest first, before the run's changes are undone
// and when the run ends.
func (rt *Runtime) AddCloser(c io.Closer) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.closers = append(rt.closers, c)
}

// Close closes what AddCloser registered.
func (rt *Runtime) Close() {
	rt.mu.Lock()
	cs := rt.closers
	rt.closers = nil
	rt.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i].Close()
	}
}

// Rollback undoes every change after mark, newest first, and reports what it
// undid and what it could not.
func (rt *Runtime) Rollback(mark int) (undone []journal.Step, failed []error) {
	rt.EndPipeline(nil) // its error is the run's, reported already
	if mark == 0 {
		rt.Close()
		// Whatever the lab's processes started, double-forked daemons
		// included, is in the lab's namespaces or carries its tag.
		store.KillLab(rt.processTag(), store.LabNetns(rt.Journal.Steps()))
	}
	rt.StopProcesses()
	r := undo.Rollback(rt.Journal, rt.k, rt.Tag(), mark)
	// What the run owns is what its journal has left: replayed, so that
	// an undone removal (an address, a route) is the run's again.
	rt.mu.Lock()
	steps := rt.Journal.Steps()
	rt.state, rt.owned = model.Replay(steps, true), len(steps)
	rt.mu.Unlock()
	rt.Spared = r.Spared
	return r.Undone, r.Errs
}
