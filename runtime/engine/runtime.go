package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/store"
	"github.com/nsrun/nsrun/runtime/undo"
	"go.starlark.net/starlark"
)

// Runtime is the state of one run.
type Runtime struct {
	Lab string
	// Prefix, if set, scopes the lab's names (see NetnsName and
	// HostLinkName): the same recipe can be up twice.
	Prefix  string
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

	mu sync.Mutex
	// hostNames maps the recipe's host link names to the kernel's, and
	// hostShort back (see HostLinkName).
	hostNames, hostShort map[string]string
	state                *model.State   // what the run has made (or queued), where it is now
	owned                int            // the steps applied to state
	memo                 map[string]any // see Memo
	// The namespaces whose links, and whose IPv6 addresses, the run
	// changed since it last waited for them to be operational (see
	// Operational).
	unsettled, tentative map[string]bool

	// An apply's run on a lab that is up (see Adopt): the lab's steps
	// each change the recipe asks for may be, by identity, oldest first;
	// how many changes the recipe has asked for; how many of them the
	// lab has passed already (see InPast).
	adoptable map[string][]int    // in an apply: the lab's steps not yet adopted, by identity
	adoptFrom []journal.Step      // the lab's steps
	planned   map[string][]string // the plan's keys of each identity, in order
	asks      map[string]int      // how many changes of each identity the recipe asked for
	// madeSettings are the settings (see model.SettingOf) the run made: a
	// later one of the same is not the lab's any more.
	madeSettings map[string]bool
	ownedSteps   []journal.Step // in an apply: those adopted and made
	asked, past  int

	// A lab across machines (see across.go): this part's link to the
	// others, the machines declared, and where each namespace is.
	across   Across
	machines map[string]journal.Machine
	placed   map[[2]string]string
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
// and nothing more must happen in it. In the past of an apply (see InPast)
// it is one that answers checks as a plan does.
func (rt *Runtime) Kernel() (kernel.Kernel, error) {
	if err := rt.Sync(); err != nil {
		return nil, err
	}
	if rt.InPast() {
		return pastKernel{rt.k}, nil
	}
	return rt.k, nil
}

// Acting returns the kernel that makes changes, as Kernel does, but never
// the past's (see InPast): for a builtin that acts through a capability of
// the kernel's (NAT) rather than looks.
func (rt *Runtime) Acting() (kernel.Kernel, error) {
	if err := rt.Sync(); err != nil {
		return nil, err
	}
	return rt.k, nil
}

// Steps returns the steps the run has: the journal's, or in an apply the
// ones it made or adopted (see Adopt), as a fresh run would have them.
func (rt *Runtime) Steps() []journal.Step {
	rt.mu.Lock()
	if rt.adoptable != nil {
		defer rt.mu.Unlock()
		return slices.Clip(rt.ownedSteps) // appended to only, as the journal's (see journal.Steps)
	}
	rt.mu.Unlock()
	return rt.Journal.Steps()
}

// Adopt makes the run one of an apply: each change the recipe asks for
// that the lab has already made (a step of steps with its key, see
// model.Key) is taken as made, with no kernel call and no record, in the
// order the lab made them; the run's model starts empty, as a fresh run's.
// keys are the lab's steps' keys ("": not to be taken), planned the plan's
// in its order: the nth change with an identity the recipe asks for is
// matched as the plan's nth of it was (one the plan undoes later with a
// change the lab undid). past is the number of changes the recipe asks for
// up to the last one the lab has (see InPast).
func (rt *Runtime) Adopt(steps []journal.Step, keys, planned []string, past int) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.adoptable, rt.adoptFrom = make(map[string][]int, len(keys)), steps
	rt.ownedSteps = make([]journal.Step, 0, len(planned))
	for i, k := range keys {
		if k != "" {
			rt.adoptable[k] = append(rt.adoptable[k], i)
		}
	}
	rt.planned, rt.asks, rt.madeSettings = make(map[string][]string, len(planned)), make(map[string]int, len(planned)), map[string]bool{}
	for _, k := range planned {
		if k != "" {
			base := model.BaseKey(k)
			rt.planned[base] = append(rt.planned[base], k)
		}
	}
	rt.state, rt.owned, rt.asked, rt.past = model.Sized(true, len(planned)), 0, 0, past
}

// keyOf is the key the change s the recipe asks for is matched by: as the
// plan's change of its identity at the same count was.
func (rt *Runtime) keyOf(s journal.Step) string {
	base := model.Key(s, true)
	if seq, n := rt.planned[base], rt.asks[base]; n < len(seq) {
		return seq[n]
	}
	return base
}

// EndAdopt ends an apply's adoption (see Adopt) and returns the steps of
// the lab's it did not take that are live still, by index in the journal,
// oldest first. If there are some, the run owns the lab's journal whole
// again, as at the apply's start, to remove them; if not, its model is
// what it made and took, which is the lab's now (a replay of a big lab's
// journal would only tell it again), and it makes nothing more.
func (rt *Runtime) EndAdopt() []int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.adoptable == nil {
		return nil
	}
	var left []int
	for k, have := range rt.adoptable {
		if len(have) > 0 && model.BaseKey(k) == k && model.Identity(rt.adoptFrom[have[0]]) != "" { // live still, not a removal
			left = append(left, have...)
		}
	}
	slices.Sort(left)
	rt.adoptable, rt.adoptFrom, rt.ownedSteps = nil, nil, nil
	if len(left) > 0 {
		rt.ownJournal()
	}
	return left
}

// ownJournal makes the run own what its journal has: a run on a lab that
// is up (an apply's, a session's) goes on from it. Call it with rt.mu
// held, or before the run begins.
func (rt *Runtime) ownJournal() {
	steps := rt.Journal.Steps()
	rt.state, rt.owned = model.Replay(steps, true), len(steps)
}

// InPast reports whether the recipe of an apply is before the last change
// the lab has made already: what it observes there, the lab has passed
// (a ping that failed before a link was up), so its checks are answered as
// a plan answers them, and fail() only notes.
func (rt *Runtime) InPast() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.asked < rt.past
}

// adopt counts a change the recipe asks for and, in an apply, takes the
// lab's step with its key as made, if there is one: the run owns it, as it
// was made.
func (rt *Runtime) adopt(s journal.Step) (journal.Step, bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.adoptable == nil {
		return s, false
	}
	rt.asked++
	key := rt.keyOf(s)
	rt.asks[model.BaseKey(key)]++
	have := rt.adoptable[key]
	if len(have) == 0 || rt.madeSettings[model.SettingOf(s)] {
		return s, false
	}
	a := rt.adoptFrom[have[0]]
	rt.adoptable[key] = have[1:]
	rt.ownedSteps = append(rt.ownedSteps, a)
	rt.state.Apply(rt.owned, a)
	rt.owned++
	return a, true
}

// WouldAdopt reports whether the change s would be taken as made (see
// Adopt): a builtin's checks of the kernel before the change are of a
// lab the change has already been made in, and are skipped.
func (rt *Runtime) WouldAdopt(s journal.Step) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.adoptable != nil && len(rt.adoptable[rt.keyOf(s)]) > 0 && !rt.madeSettings[model.SettingOf(s)]
}

// pastKernel is the kernel of an apply's past (see InPast): it acts and
// reads as the real one does, but is not one to send probes through or
// wait on (it is a kernel.Planner), so checks are answered as in a plan.
type pastKernel struct{ kernel.Kernel }

func (pastKernel) Observe()      {}
func (pastKernel) Note(_ string) {}

// The past's observations are of the lab as it is (fail() there only
// notes what a check finds).

func (p pastKernel) observer() (kernel.Observer, error) {
	if o, ok := kernel.As[kernel.Observer](p.Kernel); ok {
		return o, nil
	}
	return nil, fmt.Errorf("the run's kernel cannot be observed")
}

func (p pastKernel) Links(ns string) ([]kernel.LinkInfo, error) {
	o, err := p.observer()
	if err != nil {
		return nil, err
	}
	return o.Links(ns)
}

func (p pastKernel) Addrs(ns string) ([]kernel.Addr, error) {
	o, err := p.observer()
	if err != nil {
		return nil, err
	}
	return o.Addrs(ns)
}

func (p pastKernel) Routes(ns string) ([]kernel.RouteInfo, error) {
	o, err := p.observer()
	if err != nil {
		return nil, err
	}
	return o.Routes(ns)
}

func (p pastKernel) Neighbors(ns string) ([]kernel.Neighbor, error) {
	o, err := p.observer()
	if err != nil {
		return nil, err
	}
	return o.Neighbors(ns)
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
	if _, ok := rt.adopt(s); ok {
		return nil
	}
	return rt.change(thread, s, fn)
}

// change is Change, for a change the lab does not have.
func (rt *Runtime) change(thread *starlark.Thread, s journal.Step, fn Work) error {
	if thread != nil {
		s.Pos = callerPos(thread)
	}
	rt.place(&s)
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
	away(&s)
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
	if rt.adoptable != nil {
		rt.ownedSteps = append(rt.ownedSteps, s)
		if model.IsSetting(s.Op) {
			rt.madeSettings[model.SettingOf(s)] = true
		}
	}
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

// maxIfName is the longest interface name the kernel takes, in bytes.
const maxIfName = 15

// NetnsName is the name the kernel knows the recipe's namespace name by:
// with a prefix, PREFIX-NAME.
func (rt *Runtime) NetnsName(name string) string {
	if rt.Prefix == "" || name == kernel.Host {
		return name
	}
	return rt.Prefix + "-" + name
}

// ShortNetns is the recipe's name of the namespace the kernel knows as
// name (see NetnsName).
func (rt *Runtime) ShortNetns(name string) string {
	if rt.Prefix == "" {
		return name
	}
	if short, ok := strings.CutPrefix(name, rt.Prefix+"-"); ok {
		return short
	}
	return name
}

// HostLinkName is the name the kernel knows the recipe's link name in the
// host namespace by, for a link the recipe makes: with a prefix,
// PREFIX-NAME, or, past 15 bytes, as much of it as fits with 4 hex digits
// of its hash; two of the recipe's names that would come out the same are
// an error. A link in one of the lab's namespaces keeps its name: the
// namespace is the lab's alone.
func (rt *Runtime) HostLinkName(name string) (string, error) {
	if rt.Prefix == "" {
		return name, nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if k, ok := rt.hostNames[name]; ok {
		return k, nil
	}
	k := rt.hostLinkName(name)
	if other, taken := rt.hostShort[k]; taken {
		return "", fmt.Errorf("with prefix %q, the host links %q and %q would both be named %q: name them apart in their first %d bytes", rt.Prefix, other, name, k, maxIfName-len(rt.Prefix)-5)
	}
	if rt.hostNames == nil {
		rt.hostNames, rt.hostShort = map[string]string{}, map[string]string{}
	}
	rt.hostNames[name], rt.hostShort[k] = k, name
	return k, nil
}

// HostLinkOf is HostLinkName for a link the recipe looks up: nothing is
// recorded.
func (rt *Runtime) HostLinkOf(name string) string {
	if rt.Prefix == "" {
		return name
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if k, ok := rt.hostNames[name]; ok {
		return k
	}
	return rt.hostLinkName(name)
}

// hostLinkName derives the kernel's name of host link name (see
// HostLinkName).
func (rt *Runtime) hostLinkName(name string) string {
	k := rt.Prefix + "-" + name
	if len(k) > maxIfName {
		sum := sha256.Sum256([]byte(rt.Prefix + "\x00" + name))
		k = k[:maxIfName-4] + hex.EncodeToString(sum[:2])
	}
	return k
}

// ShortHostLink is the recipe's name of the host link the kernel knows
// as name (see HostLinkName).
func (rt *Runtime) ShortHostLink(name string) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if short, ok := rt.hostShort[name]; ok {
		return short
	}
	return name
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
	var stops []journal.Step
	for _, s := range rt.Journal.Since(mark) { // those started since: the others keep running
		switch s.Op {
		case journal.OpProc:
			proc.Stop(s.Pid, s.Start)
		case journal.OpStop:
			stops = append(stops, s)
		}
	}
	r := undo.Rollback(rt.Journal, rt.k, rt.Tag(), mark)
	if mark > 0 && len(r.Errs) == 0 { // the lab is as it was: its processes run again
		r.Errs = rt.restart(stops)
	}
	// What the run owns is what its journal has left: replayed, so that
	// an undone removal (an address, a route) is the run's again.
	rt.mu.Lock()
	rt.ownJournal()
	rt.mu.Unlock()
	rt.Spared = r.Spared
	return r.Undone, r.Errs
}
