package runtime

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// A Step is one change a run made, with what its undo needs. Steps are plain
// data, written to the lab's journal as they happen, so that another process
// (`nsrun down`) can undo them.
type Step struct {
	Seq   int    `json:"seq,omitempty"`   // in the file: the change's number
	State string `json:"state,omitempty"` // in the file: see StateIntent

	Pos  string `json:"pos"`            // recipe file:line:col that made the change
	Op   string `json:"op"`             // see undo
	NS   string `json:"ns,omitempty"`   // namespace of the object ("" host)
	Name string `json:"name,omitempty"` // netns, link or process name; sysctl key

	Kind     string        `json:"kind,omitempty"`  // link kind
	Ino      uint64        `json:"ino,omitempty"`   // netns inode
	Mnt      uint64        `json:"mnt,omitempty"`   // netns: the unique id of its pin's mount
	Pin      uint64        `json:"pin,omitempty"`   // netns: the inode of its pin file (see kernel.NetnsID)
	Alias    string        `json:"alias,omitempty"` // ownership tag of a link, or of a netns's lo
	MAC      string        `json:"mac,omitempty"`   // the MAC a link was created with
	PeerNS   string        `json:"peer_ns,omitempty"`
	PeerName string        `json:"peer,omitempty"`
	PeerMAC  string        `json:"peer_mac,omitempty"`  // a veth peer's MAC, when the peer has no tag (see kernel.LinkSpec)
	ParentNS string        `json:"parent_ns,omitempty"` // a macvlan's, macvtap's or vlan's parent link
	Parent   string        `json:"parent,omitempty"`
	Mode     string        `json:"mode,omitempty"` // a macvlan's mode, a vlan's id
	Addr     netip.Prefix  `json:"addr,omitzero"`
	Route    *kernel.Route `json:"route,omitempty"`
	Old      string        `json:"old,omitempty"` // the value before the change
	New      string        `json:"new,omitempty"` // move: the namespace moved to; master: the master set; sysctl: the value set
	Pid      int           `json:"pid,omitempty"`
	Start    uint64        `json:"start,omitempty"` // process start time, from /proc
}

// The operations a step records.
const (
	OpNetns   = "netns"  // netns created
	OpLink    = "link"   // link created (a veth: both ends)
	OpUp      = "up"     // link set up or down; Old "up" or "down"
	OpMaster  = "master" // master set or cleared; Old is the previous master
	OpMTU     = "mtu"
	OpMAC     = "mac"
	OpMove    = "move"    // link moved from NS to New
	OpHairpin = "hairpin" // Old "on" or "off"
	OpAddr    = "addr"
	OpRoute   = "route"
	OpSysctl  = "sysctl"
	OpProc    = "proc" // background process started
)

// String names the object for a person: `veth "veth0"`, `address 10.0.0.1/24 on "veth1" in netns "blue"`.
func (s Step) String() string {
	in := ""
	if s.NS != kernel.Host {
		in = fmt.Sprintf(" in netns %q", s.NS)
	}
	switch s.Op {
	case OpNetns:
		return fmt.Sprintf("netns %q", s.Name)
	case OpLink:
		return fmt.Sprintf("%s %q%s", s.Kind, s.Name, in)
	case OpAddr:
		return fmt.Sprintf("address %s on %q%s", s.Addr, s.Name, in)
	case OpRoute:
		return fmt.Sprintf("route %s%s", s.Route, in)
	case OpSysctl:
		return fmt.Sprintf("sysctl %s%s", s.Name, in)
	case OpProc:
		return fmt.Sprintf("process %d (%s)%s", s.Pid, s.Name, in)
	case OpMove:
		return fmt.Sprintf("move of %q to netns %q", s.Name, kernel.NSArg(s.New))
	default:
		return fmt.Sprintf("%s of %q%s", s.Op, s.Name, in)
	}
}

// Journal is the LIFO of a run's steps, mirrored to a write-ahead file of
// JSON lines: before each change an intent record, after it a done record
// (or a void one if the change failed), so that a run killed at any instant
// leaves enough to finish the undo.
//
// A done record that only confirms its intent is a bare {"seq":N}. For the
// changes whose undo is the same whether they are known made or only
// intended (confirmLater), it waits to go out in one write with the next
// record, or at Flush: until then the change reads as an intent, which is
// what it would read as had the run been killed a moment earlier.
type Journal struct {
	mu    sync.Mutex // a pipelined run writes from two goroutines
	steps []Step
	seq   int
	path  string
	file  *os.File // nil: in memory only
	buf   []byte   // records not yet written
}

// Record states in the file. A done record has none.
const (
	StateIntent = "intent" // the change may have been made
	stateVoid   = "void"   // the change failed: its intent is void
)

// OpenJournal returns a journal that appends to path, or one kept in memory
// if path is "".
func OpenJournal(path string) (*Journal, error) {
	if path == "" {
		return &Journal{}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &Journal{path: path, file: f}, nil
}

// ReadJournal reads a journal file: the steps done and, marked
// State == StateIntent, those that may have been (an intent whose done
// record is missing: the run died in between, or, for a lab whose run is
// still going, its last change's confirmation has not gone out yet). A torn
// last line, left by a process killed while writing it, is ignored. A
// record that cannot be read (garbage, from a disk or a person) is skipped:
// the steps of the others are returned, with a *DamagedJournal error.
func ReadJournal(path string) ([]Step, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var steps []Step
	var bad []int
	at := map[int]int{} // seq -> index in steps
	r := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			break // a line without its newline is torn
		}
		if err != nil {
			return live(steps), err
		}
		var s Step
		if err := json.Unmarshal(line, &s); err != nil {
			bad = append(bad, n)
			continue
		}
		i, seen := at[s.Seq]
		switch {
		case s.Op == "" && s.State == "" && s.Seq != 0 && seen: // {"seq":N}: done, as intended
			steps[i].State = ""
		case s.Op == "" && s.State != stateVoid:
			// not a record nsrun writes
		case s.Seq == 0 || !seen: // an intent, or a record without one
			at[s.Seq] = len(steps)
			steps = append(steps, s)
		case s.State == stateVoid:
			steps[i].Op = "" // dropped below
		default:
			steps[i] = s
		}
	}
	if len(bad) > 0 {
		return live(steps), &DamagedJournal{Path: path, Records: bad}
	}
	return live(steps), nil
}

// A DamagedJournal is a journal with records that cannot be read.
type DamagedJournal struct {
	Path    string
	Records []int // their numbers, from 1
}

func (e *DamagedJournal) Error() string {
	return fmt.Sprintf("%s: %s unreadable (%v)", e.Path, Plural(len(e.Records), "record"), e.Records)
}

// live drops the steps whose intent was voided, and the intents of changes
// that were never begun. A run makes its changes one at a time, in the order
// of their intents, and a change whose done record is not held back
// (confirmLater) has it written before the next change begins: an intent
// after such a change's unconfirmed intent is one a pipelined run queued
// and never began. Its undo could only go wrong (a namespace's placeholder
// file under that name would be someone else's).
func live(steps []Step) []Step {
	kept := steps[:0]
	begun := true
	for _, s := range steps {
		switch {
		case s.Op == "":
		case s.State == StateIntent && !begun:
		default:
			kept = append(kept, s)
			if s.State == StateIntent && !confirmLater[s.Op] {
				begun = false
			}
		}
	}
	return kept
}

// write writes s, after the records waiting, or only queues it if later.
func (j *Journal) write(s Step, later bool) error {
	if j.file == nil {
		return nil
	}
	if s.Op == "" && s.State == "" {
		j.buf = fmt.Appendf(j.buf, "{\"seq\":%d}\n", s.Seq)
	} else {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		j.buf = append(append(j.buf, b...), '\n')
	}
	if later {
		return nil
	}
	return j.flush()
}

// Flush writes the records waiting.
func (j *Journal) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.flush()
}

func (j *Journal) flush() error {
	if j.file == nil || len(j.buf) == 0 {
		return nil
	}
	_, err := j.file.Write(j.buf)
	j.buf = j.buf[:0]
	return err
}

// Intend records that change s is about to be made, and returns its number.
func (j *Journal) Intend(s Step) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	s.Seq, s.State = j.seq, StateIntent
	return j.seq, j.write(s, false)
}

// Done records that change seq, intended as intent, was made, as s says.
func (j *Journal) Done(seq int, intent, s Step) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	s.Seq, s.State = seq, ""
	if len(j.steps) == cap(j.steps) {
		// Doubled, not grown by a quarter as append does past a few
		// hundred: a plan's steps (whose number is not known ahead) are
		// copied half as often.
		j.steps = slices.Grow(j.steps, max(len(j.steps), 64))
	}
	j.steps = append(j.steps, s)
	if j.file == nil {
		return nil
	}
	intent.Seq, intent.State = seq, ""
	if s == intent {
		return j.write(Step{Seq: seq}, confirmLater[s.Op])
	}
	return j.write(s, false)
}

// confirmLater holds the operations whose undo does not depend on whether
// the change is known made: restoring an old state, or removing what may not
// be there, is harmless either way. Not so for the others: an intended link
// is left out of the teardown by device group, an intended move is assumed
// not to have happened, another package's intended op is not undone (see
// Undo), and a namespace's or a process's done record carries what its undo
// needs.
var confirmLater = map[string]bool{
	OpUp: true, OpMaster: true, OpMTU: true, OpMAC: true, OpHairpin: true,
	OpAddr: true, OpRoute: true, OpSysctl: true,
}

// Void records that change seq failed and was not made.
func (j *Journal) Void(seq int) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.write(Step{Seq: seq, State: stateVoid}, false)
}

// Add records a change made without an intent (tests, recovery).
func (j *Journal) Add(s Step) error {
	seq, err := j.Intend(s)
	if err != nil {
		return err
	}
	if err := j.Done(seq, s, s); err != nil {
		return err
	}
	return j.Flush()
}

// Reserve makes room for n more steps: a run knows from its plan how many
// it will make.
func (j *Journal) Reserve(n int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.steps = slices.Grow(j.steps, n)
}

// Len is the number of steps; a mark for Rollback.
func (j *Journal) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.steps)
}

// Steps returns a copy of the recorded steps, oldest first.
func (j *Journal) Steps() []Step {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.steps)
}

// Close writes the records waiting and closes the journal file.
func (j *Journal) Close() error {
	if j.file == nil {
		return nil
	}
	return errors.Join(j.Flush(), j.file.Close())
}

// Since returns the steps from mark on, flushing queued confirmations
// first: a rollback killed midway leaves the file as exact as it can be.
func (j *Journal) Since(mark int) []Step {
	j.Flush()
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.steps[mark:])
}

// Truncate keeps the steps before mark, then kept (those a rollback could
// not undo), and rewrites the file with them.
func (j *Journal) Truncate(mark int, kept []Step) error {
	j.mu.Lock()
	j.steps = append(j.steps[:mark], kept...)
	j.mu.Unlock()
	if j.file == nil {
		return nil
	}
	return j.rewrite()
}

// Rollback undoes the steps after mark, those of the lab with tag, and
// forgets them (rewriting the file). It never stops at a failure: each is
// returned, and the step stays in the journal so that a later `down` can
// try again.
func Rollback(j *Journal, k kernel.Kernel, tag string, mark int) UndoResult {
	r := Undo(k, tag, j.Since(mark))
	if err := j.Truncate(mark, r.Failed); err != nil {
		r.Errs = append(r.Errs, fmt.Errorf("rewriting the journal: %w", err))
	}
	return r
}

// rewrite replaces the file with the steps kept, atomically: a crash
// leaves the old journal or the new one, never a truncated one.
func (j *Journal) rewrite() error {
	j.buf = j.buf[:0] // the new file has every step kept as done
	if err := writeSteps(j.path, j.steps); err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	j.file.Close()
	j.file = f
	return nil
}

// writeSteps writes steps as done records to a new file at path.
func writeSteps(path string, steps []Step) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	j := &Journal{file: f}
	for _, s := range steps {
		if err := j.Add(s); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// An UndoResult is what an undo did.
type UndoResult struct {
	Undone []Step  // undone, or found gone already
	Failed []Step  // not undone: kept, in journal order, for a later try
	Errs   []error // why, one for each failure
	// Spared holds the objects found in the place of a step's that are
	// not the lab's (someone made one of that name since): the lab's own
	// is gone, and the stranger is left alone.
	Spared []error
}

// Undo reverses steps of the lab with tag, newest first, as cheaply as the
// kernel allows: a step whose object dies with a namespace that is being
// deleted is not undone one by one (deleting a device costs an RCU barrier;
// deleting its namespace removes all of them together). Background
// processes are stopped first, since they hold their namespaces alive.
// Every undo first checks that what it changes is still the lab's (see
// owner).
func Undo(k kernel.Kernel, tag string, steps []Step) (r UndoResult) {
	m := moot(steps)
	own := newOwner(k, tag)
	order := make([]int, 0, len(steps))
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Op == OpProc {
			order = append(order, i)
		}
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Op != OpProc {
			order = append(order, i)
		}
	}
	precheck(k, steps, order, m)
	batched := deleteGroup(k, steps, m)
	failedAt := map[int]bool{}
	var covered []int // steps another step's undo does
	n := 0
	for _, i := range order {
		s := steps[i]
		if batched[i] {
			if _, ok := m.by[i]; !ok {
				r.Undone = append(r.Undone, s)
			} else {
				covered = append(covered, i)
			}
			continue
		}
		if _, foreign := undoers[s.Op]; foreign && s.State == StateIntent {
			// Another package's op whose outcome is unknown: its
			// undo cannot prove the object is the lab's. (Those ops
			// live in the lab's namespaces, which go anyway.)
			continue
		}
		if loc, ok := m.at[i]; ok {
			s.NS, s.Name = loc[0], loc[1]
		}
		if _, ok := m.by[i]; ok {
			covered = append(covered, i)
			continue
		}
		n++
		if undoHook != nil {
			undoHook(n)
		}
		err := own.check(s)
		if err == nil {
			err = undo(k, s)
		}
		switch {
		case err == nil || errors.Is(err, errGone):
			r.Undone = append(r.Undone, s)
		case errors.Is(err, kernel.ErrNotOurs):
			// The object in the step's place is not the lab's: the
			// lab's is gone (or, for an intent, was never made).
			if s.State != StateIntent {
				r.Spared = append(r.Spared, fmt.Errorf("%s (%s): left alone: %w", s, s.Pos, err))
			}
		default:
			failedAt[i] = true
			r.Errs = append(r.Errs, fmt.Errorf("%s (%s): %w", s, s.Pos, err))
		}
	}
	// A step covered by an undo that failed is kept too, for the retry.
	for _, i := range covered {
		if failedAt[m.by[i]] {
			failedAt[i] = true
		} else {
			r.Undone = append(r.Undone, steps[i])
		}
	}
	// A link whose move was under way when its run died may be at the
	// other end of the move: it is deleted there too, by its fingerprint.
	for _, i := range slices.Sorted(maps.Keys(m.alt)) {
		if failedAt[i] {
			continue
		}
		for _, loc := range m.alt[i] {
			if _, dies := m.gone(loc.ns); dies {
				continue
			}
			err := k.LinkDel(loc.ns, loc.name, loc.fp)
			if err != nil && !errors.Is(err, kernel.ErrNotFound) && !errors.Is(err, kernel.ErrNotOurs) {
				failedAt[i] = true
				r.Errs = append(r.Errs, fmt.Errorf("%s (%s), moved to netns %q: %w", steps[i], steps[i].Pos, kernel.NSArg(loc.ns), err))
			}
		}
	}
	for i, s := range steps { // kept in journal order
		if failedAt[i] {
			r.Failed = append(r.Failed, s)
		}
	}
	// The links deleted in the batch are gone already: the kernel answered
	// the request once it had removed them.
	deleted := map[[2]string]bool{}
	for i := range batched {
		deleted[m.at[i]] = true
	}
	for ns, links := range m.settle {
		links = slices.DeleteFunc(links, func(l kernel.NamedLink) bool { return deleted[[2]string{ns, l.Name}] })
		if len(links) == 0 {
			continue
		}
		if err := k.Settle(ns, links); err != nil {
			r.Errs = append(r.Errs, err)
		}
	}
	return r
}

// undoHook, in binaries built for the fault harness, runs before the n-th
// undo a rollback or teardown makes itself.
var undoHook func(n int)

// precheck asks a kernel that can (the real one) to confirm the tags of all
// the namespaces the undo deletes before it deletes any (see
// kernel.Netlink.PrecheckNetns).
func precheck(k kernel.Kernel, steps []Step, order []int, m mootness) {
	pc, ok := kernel.As[kernel.NetnsPrechecker](k)
	if !ok {
		return
	}
	var names, tags []string
	var inos, mnts []uint64
	for _, i := range order {
		s := steps[i]
		if _, covered := m.by[i]; s.Op == OpNetns && !covered {
			names, tags = append(names, s.Name), append(tags, s.Alias)
			inos, mnts = append(inos, s.Ino), append(mnts, s.Mnt)
		}
	}
	if len(names) > 1 {
		pc.PrecheckNetns(names, inos, mnts, tags)
	}
}

// deleteGroup deletes, in one request, the links the steps created in the
// host that are there still (see kernel.Netlink.LinkDelGroup), and returns
// those steps. Their undo is then done, and changes to their links moot.
func deleteGroup(k kernel.Kernel, steps []Step, m mootness) map[int]bool {
	gd, ok := kernel.As[kernel.GroupDeleter](k)
	if !ok {
		return nil
	}
	byName := map[string]int{}
	var names []string
	var tag string
	for i, s := range steps {
		at, ok := m.at[i]
		if s.Op != OpLink || s.State == StateIntent || !ok || at[0] != kernel.Host || at[1] != s.Name {
			continue
		}
		if tag != "" && s.Alias != tag {
			return nil // one lab's steps carry one tag
		}
		tag = s.Alias
		byName[s.Name] = i
		names = append(names, s.Name)
	}
	if len(names) < 2 {
		return nil
	}
	gone, err := gd.LinkDelGroup(kernel.Host, tag, names)
	if err != nil {
		return nil // each is deleted on its own, with its checks
	}
	batched := map[int]bool{}
	for _, n := range gone {
		batched[byName[n]] = true
	}
	return batched
}

type mootness struct {
	by     map[int]int                   // step -> the step whose undo also undoes it
	settle map[string][]kernel.NamedLink // links, by namespace, that die with a deleted one
	at     map[int][2]string             // link creations: where the link is now (ns, name)
	alt    map[int][]place               // link creations: where an end may be instead (an unconfirmed move)
	gone   func(ns string) (int, bool)   // the step that deletes namespace ns, if one does
}

// place is where a link of the lab may be, and how to know it.
type place struct {
	ns, name string
	fp       kernel.Fingerprint
}

// moot works out which steps a namespace deletion in the same set makes
// unnecessary, following links as they move (see LabState).
func moot(steps []Step) mootness {
	m := mootness{by: map[int]int{}, settle: map[string][]kernel.NamedLink{}, at: map[int][2]string{}, alt: map[int][]place{}}
	st := ReplaySteps(steps, true)
	deleted := map[string]int{} // namespace -> the step that created it
	for _, n := range st.Netns {
		deleted[n.Name] = n.Step
	}
	gone := func(ns string) (int, bool) { i, ok := deleted[ns]; return i, ok }
	m.gone = gone
	// A link dies with a namespace it or its veth peer ends up in: the
	// step that created that namespace covers it.
	dies := func(l *LinkState) (int, bool) {
		if i, ok := gone(l.At.NS); ok {
			return i, true
		}
		if l.Peer != nil {
			return gone(l.Peer.At.NS)
		}
		return 0, false
	}
	for i, s := range steps {
		switch s.Op {
		case OpLink:
			l := st.Of[i]
			ends := []*LinkState{l}
			if l.Peer != nil {
				ends = append(ends, l.Peer)
			}
			// Its moves are not undone: delete it where it is now, and
			// where a move whose outcome is unknown may have put it.
			m.at[i] = [2]string{l.At.NS, l.At.Name}
			for _, end := range ends {
				for _, k := range end.Maybe {
					m.alt[i] = append(m.alt[i], place{k.NS, k.Name, end.Fingerprint()})
				}
			}
			by, ok := dies(l)
			if !ok {
				continue
			}
			m.by[i] = by
			for _, end := range ends {
				if _, del := gone(end.At.NS); !del {
					m.settle[end.At.NS] = append(m.settle[end.At.NS], kernel.NamedLink{Name: end.At.Name, Fingerprint: end.Fingerprint()})
				}
			}
		case OpMove, OpUp, OpMaster, OpMTU, OpMAC, OpAddr, OpHairpin:
			// Changes to a link that goes away go with it.
			l := st.Of[i]
			if by, ok := gone(s.NS); ok {
				m.by[i] = by
			} else if by, ok := dies(l); ok {
				m.by[i] = by
			} else if l.Made >= 0 {
				m.by[i] = l.Made
			}
		case OpNetns, OpProc:
			// Never moot: a process outlives its namespace's deletion
			// (it holds the namespace alive).
		default: // routes, sysctls, and ops registered by other packages
			if by, ok := gone(s.NS); ok {
				m.by[i] = by
			}
		}
	}
	// Follow chains (a change to a link that dies with a namespace) to the
	// step that is really undone.
	for i := range m.by {
		for {
			j, ok := m.by[m.by[i]]
			if !ok {
				break
			}
			m.by[i] = j
		}
	}
	return m
}

// undoers holds the undo of operations that other packages journal.
var undoers = map[string]func(kernel.Kernel, Step) error{}

// RegisterUndo makes fn the undo of steps with operation op; fn must be
// idempotent and must remove an object only if it is still the lab's. A step
// in a namespace the same rollback deletes is not undone: the namespace's
// deletion does it. Call it from an init function.
func RegisterUndo(op string, fn func(kernel.Kernel, Step) error) {
	if _, dup := undoers[op]; dup {
		panic("runtime: duplicate undo for " + op)
	}
	undoers[op] = fn
}

// undo reverses one step. Every undo is idempotent: what is already gone
// counts as undone.
func undo(k kernel.Kernel, s Step) error {
	switch s.Op {
	case OpNetns:
		return k.NetnsDel(s.Name, s.Alias, kernel.NetnsID{Ino: s.Ino, Mnt: s.Mnt, Pin: s.Pin})
	case OpLink:
		fp := kernel.Fingerprint{Alias: s.Alias, MAC: s.MAC}
		if s.NS == kernel.Host && s.State != StateIntent {
			// Made, and so tagged (see kernel.Netlink.LinkAdd): only a
			// link cut short between its making and its tagging is known
			// by its MAC in the host.
			fp.MAC = ""
		}
		return k.LinkDel(s.NS, s.Name, fp)
	case OpUp:
		return ignoreGone(k.LinkSetUp(s.NS, s.Name, s.Old == "up"))
	case OpMaster:
		return ignoreGone(k.LinkSetMaster(s.NS, s.Name, s.Old))
	case OpMTU:
		mtu, err := strconv.Atoi(s.Old)
		if err != nil {
			return err
		}
		return ignoreGone(k.LinkSetMTU(s.NS, s.Name, mtu))
	case OpMAC:
		mac, err := net.ParseMAC(s.Old)
		if err != nil {
			return err
		}
		return ignoreGone(k.LinkSetMAC(s.NS, s.Name, mac))
	case OpMove:
		return ignoreGone(k.LinkMove(s.New, s.Name, s.NS))
	case OpHairpin:
		return ignoreGone(k.LinkSetHairpin(s.NS, s.Name, s.Old == "on"))
	case OpAddr:
		return k.AddrDel(s.NS, s.Name, s.Addr)
	case OpRoute:
		return k.RouteDel(s.NS, *s.Route)
	case OpSysctl:
		if s.New != "" {
			// Restored only if it holds what the lab set: a value
			// someone set since is theirs.
			cur, err := k.SysctlGet(s.NS, s.Name)
			if err != nil {
				return ignoreGone(err)
			}
			if cur == s.Old {
				return nil
			}
			if cur != s.New {
				return fmt.Errorf("%s is %q, set since by someone else (the lab set %q): %w", s, cur, s.New, kernel.ErrNotOurs)
			}
		}
		return ignoreGone(k.SysctlSet(s.NS, s.Name, s.Old))
	case OpProc:
		return stopProcess(s.Pid, s.Start)
	}
	if fn, ok := undoers[s.Op]; ok {
		return fn(k, s)
	}
	return fmt.Errorf("unknown journal operation %q", s.Op)
}

func ignoreGone(err error) error {
	if errors.Is(err, kernel.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
