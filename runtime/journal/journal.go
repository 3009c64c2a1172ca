package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/words"
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
	OldRoute *kernel.Route `json:"old_route,omitempty"` // route: the lab's route it replaced (see OpRoute)
	Was      *LinkWas      `json:"was,omitempty"`       // link_del: what the link was; up (down): what the kernel drops with it
	Old      string        `json:"old,omitempty"`       // the value before the change
	New      string        `json:"new,omitempty"`       // move: the namespace moved to; master: the master set; sysctl: the value set
	Pid      int           `json:"pid,omitempty"`
	Start    uint64        `json:"start,omitempty"` // process start time, from /proc
	Path     string        `json:"path,omitempty"`  // private, file: where the lab keeps it (see nsexec.Node); proc: its log
	// Cmd is a process's command, to start it again.
	Cmd *Command `json:"cmd,omitempty"`
	// NAT is a NAT rule the lab added, or removed: what its removal's
	// undo adds again.
	NAT *kernel.NATRule `json:"nat,omitempty"`
	// Rule is a routing policy rule the lab added, or removed (see
	// package builtins: ops "rule" and "rule_del").
	Rule *kernel.Rule `json:"rule,omitempty"`
	// Sum is what else makes the object what it is, hashed: a process's
	// command, environment and directory; a file's content (see
	// model.Identity).
	Sum string `json:"sum,omitempty"`

	// On is the machine of a lab across machines the change is made on
	// ("" a lab on one machine); Away, that it is another machine's: it
	// is in the journal so that every machine's model is the whole lab's,
	// and is never made or undone here. Machine is a machine the lab
	// declared (op OpPart).
	On      string   `json:"on,omitempty"`
	VNI     int      `json:"vni,omitempty"` // a link across machines: its vxlan's VNI
	Away    bool     `json:"away,omitempty"`
	Machine *Machine `json:"machine,omitempty"`
}

// A Machine is a host a lab across machines has a part on, and how it is
// reached: OpenSSH's ssh to SSH, with configuration Config (ssh -F, ""
// the user's), running Nsrun there; Underlay is the address its VXLAN
// endpoints use.
type Machine struct {
	Name     string `json:"name"`
	SSH      string `json:"ssh"`
	Config   string `json:"config,omitempty"`
	Nsrun    string `json:"nsrun,omitempty"`
	Underlay string `json:"underlay,omitempty"`
}

// A Command is how a process of the lab's was started: its command, the
// environment the recipe gave it (not the rest of nsrun's) and its
// directory.
type Command struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
}

// LinkWas is what a link the lab removed was, for the removal's undo to
// make it again as it was: the same name, kind, MACs, MTU, addresses,
// master and state, its bridge's ports back in it, the lab's routes through
// it back.
type LinkWas struct {
	Spec  kernel.LinkSpec `json:"spec"`            // how to make it again, where it was
	Ends  []EndWas        `json:"ends"`            // each end's settings (a veth has two)
	Ports []string        `json:"ports,omitempty"` // a bridge's ports, in its namespace
}

// EndWas is what one end of a removed link was.
type EndWas struct {
	NS      string            `json:"ns,omitempty"`
	Name    string            `json:"name"`
	MTU     int               `json:"mtu"`
	Up      bool              `json:"up,omitempty"`
	Master  string            `json:"master,omitempty"`
	Hairpin bool              `json:"hairpin,omitempty"`
	Addrs   []netip.Prefix    `json:"addrs,omitempty"`   // but IPv6 link-local ones, which the kernel makes again
	Routes  []kernel.Route    `json:"routes,omitempty"`  // the lab's routes through it
	Sysctls map[string]string `json:"sysctls,omitempty"` // the lab's settings of its own (net.ipv4.conf.NAME.*)
	Shape   string            `json:"shape,omitempty"`   // the lab's shaping of it (see kernel.Shape)
	FDB     []string          `json:"fdb,omitempty"`     // the lab's forwarding entries on it (see kernel.FDBEntry)
}

// The operations a step records.
const (
	OpNetns   = "netns"  // netns created
	OpLink    = "link"   // link created (a veth: both ends)
	OpUp      = "up"     // link set up or down; Old and New "up" or "down"; a link taken down has in Was what the kernel dropped
	OpMaster  = "master" // master set or cleared; Old is the previous master
	OpMTU     = "mtu"
	OpMAC     = "mac"
	OpMove    = "move"    // link moved from NS to New
	OpHairpin = "hairpin" // Old "on" or "off"
	OpAddr    = "addr"
	OpAddrDel = "addr_del" // an address the lab added, removed
	// OpRoute adds Route; with OldRoute, it replaced that route of the
	// lab's (same destination and metric) by Route.
	OpRoute    = "route"
	OpRouteDel = "route_del" // a route the lab added, removed
	OpLinkDel  = "link_del"  // a link the lab made, removed (a veth: both ends); Was says what it was
	// OpNetnsDel removes a namespace the lab made (Name, Alias its tag),
	// once its links are removed; Was.Ends[0] is its lo, with the lab's
	// sysctls of the namespace and its routes through no link of the
	// lab's; Mode "noipv6" if IPv6 was off in it.
	OpNetnsDel = "netns_del"
	OpSysctl   = "sysctl"
	// OpRule adds Rule, a routing policy rule, its Name the rule's
	// `ip rule` form; OpRuleDel removes the lab's.
	OpRule    = "rule"
	OpRuleDel = "rule_del"
	// OpFDB adds a static forwarding entry to link Name, New the entry
	// (see kernel.FDBEntry); OpFDBDel removes the lab's.
	OpFDB    = "fdb"
	OpFDBDel = "fdb_del"
	// OpShape sets link Name's shaping, New (see kernel.Shape), "" none;
	// Old is what it was.
	OpShape   = "shape"
	OpProc    = "proc"    // background process started
	OpStop    = "stop"    // a background process (Pid, Start) the recipe stopped on purpose
	OpPrivate = "private" // a node's private directory at Name, kept at Path
	OpFile    = "file"    // a file a node shows at Name, kept at Path; Old: where its previous content was put
	// OpPart is the part of a lab across machines that Machine builds,
	// journaled by the coordinating run before the part begins; its
	// undo tears the part down there (see package machines).
	OpPart = "part"
)

// String names the object for a person: `veth "veth0"`, `address 10.0.0.1/24 on "veth1" in netns "blue"`.
func (s Step) String() string {
	in := ""
	if s.NS != kernel.Host {
		in = fmt.Sprintf(" in netns %q", s.NS)
	}
	if s.Rule != nil {
		if s.Op == OpRuleDel {
			return fmt.Sprintf("removal of rule %q%s", s.Rule, in)
		}
		return fmt.Sprintf("rule %q%s", s.Rule, in)
	}
	switch s.Op {
	case OpPart:
		return fmt.Sprintf("part on machine %q", s.Name)
	case OpNetns:
		return fmt.Sprintf("netns %q", s.Name)
	case OpLink:
		return fmt.Sprintf("%s %q%s", s.Kind, s.Name, in)
	case OpAddr:
		return fmt.Sprintf("address %s on %q%s", s.Addr, s.Name, in)
	case OpAddrDel:
		return fmt.Sprintf("removal of address %s from %q%s", s.Addr, s.Name, in)
	case OpRoute:
		if s.OldRoute != nil {
			return fmt.Sprintf("route %s%s (replacing %s)", s.Route, in, s.OldRoute)
		}
		return fmt.Sprintf("route %s%s", s.Route, in)
	case OpRouteDel:
		return fmt.Sprintf("removal of route %s%s", s.Route, in)
	case OpLinkDel:
		return fmt.Sprintf("removal of %s %q%s", s.Kind, s.Name, in)
	case OpNetnsDel:
		return fmt.Sprintf("removal of netns %q", s.Name)
	case OpSysctl:
		return fmt.Sprintf("sysctl %s%s", s.Name, in)
	case OpProc:
		return fmt.Sprintf("process %d (%s)%s", s.Pid, s.Name, in)
	case OpStop:
		return fmt.Sprintf("stop of process %d (%s)%s", s.Pid, s.Name, in)
	case OpMove:
		return fmt.Sprintf("move of %q to netns %q", s.Name, kernel.NSArg(s.New))
	case OpPrivate:
		return fmt.Sprintf("private directory %s%s", s.Name, in)
	case OpFile:
		return fmt.Sprintf("file %s%s", s.Name, in)
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

// Open returns a journal that appends to path, or one kept in memory
// if path is "".
func Open(path string) (*Journal, error) {
	if path == "" {
		return &Journal{}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &Journal{path: path, file: f}, nil
}

// Reopen returns a journal that goes on with the steps of the file at
// path, all done (an intent there is refused: a change whose outcome is
// unknown must be undone first), numbering its records after the file's.
func Reopen(path string) (*Journal, error) {
	steps, last, end, err := read(path, true)
	if err != nil {
		return nil, err
	}
	for _, s := range steps {
		if s.State == StateIntent {
			return nil, fmt.Errorf("%s (%s) may or may not have been made", s, s.Pos)
		}
	}
	// A torn last line (a run killed while writing it) goes, so that the
	// next record starts a line of its own.
	if err := os.Truncate(path, end); err != nil {
		return nil, err
	}
	j, err := Open(path)
	if err != nil {
		return nil, err
	}
	j.steps, j.seq = steps, last
	return j, nil
}

// Read reads a journal file: the steps done and, marked
// State == StateIntent, those that may have been (an intent whose done
// record is missing: the run died in between, or, for a lab whose run is
// still going, its last change's confirmation has not gone out yet). A torn
// last line, left by a process killed while writing it, is ignored. A
// record that cannot be read (garbage, from a disk or a person) is skipped:
// the steps of the others are returned, with a *Damaged error.
func Read(path string) ([]Step, error) {
	steps, _, _, err := read(path, false)
	return steps, err
}

// read is Read, and returns the highest record number in the file too,
// and where its last whole line ends. For more, the steps have room for
// some more (a journal reopened is added to: an apply's few changes, or a
// session's, are not a copy of a big lab's steps).
func read(path string, more bool) (_ []Step, last int, end int64, _ error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, 0, err
	}
	// Most steps have two records, an intent and its done record: sized
	// for that, a big lab's steps are not copied as they are read.
	records := bytes.Count(data, []byte{'\n'})
	room := records/2 + 1
	if more {
		room += room/16 + 64
	}
	steps := make([]Step, 0, room)
	var bad []int
	at := make(map[int]int, records/2+1) // seq -> index in steps
	// One step read into, again and again: the decoders take its address,
	// which would put a step of each line on the heap.
	var s Step
	for n := 1; ; n++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break // a line without its newline is torn
		}
		line := data[:i+1]
		data = data[i+1:]
		end += int64(len(line))
		s = Step{}
		// Most lines are read without the JSON decoder.
		switch seq, done := doneRecord(line); {
		case done:
			s.Seq = seq
		case flatRecord(line, &s):
		case json.Unmarshal(line, &s) != nil:
			bad = append(bad, n)
			continue
		}
		last = max(last, s.Seq)
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
		return live(steps), last, end, &Damaged{Path: path, Records: bad}
	}
	return live(steps), last, end, nil
}

// doneRecord reads a line `{"seq":N}` as write writes it, the record of a
// change made as intended.
func doneRecord(line []byte) (int, bool) {
	const pre, post = `{"seq":`, "}\n"
	b, ok := bytes.CutPrefix(line, []byte(pre))
	if !ok {
		return 0, false
	}
	if b, ok = bytes.CutSuffix(b, []byte(post)); !ok || len(b) == 0 || len(b) > 18 || b[0] == '0' {
		return 0, false
	}
	seq := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		seq = seq*10 + int(c-'0')
	}
	return seq, true
}

// A Damaged is a journal with records that cannot be read.
type Damaged struct {
	Path    string
	Records []int // their numbers, from 1
}

func (e *Damaged) Error() string {
	return fmt.Sprintf("%s: %s unreadable (%v)", e.Path, words.Plural(len(e.Records), "record"), e.Records)
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
	OpAddr: true, OpRoute: true, OpSysctl: true, OpAddrDel: true, OpRouteDel: true,
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

// Steps returns the recorded steps, oldest first, with no copy of them: a
// step, once recorded, is never changed where it is (the few changes of
// recorded steps, Truncate, Update and Renew, change a copy), and one
// recorded later goes past the end of what was returned. The caller must
// not change them either.
func (j *Journal) Steps() []Step {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clip(j.steps)
}

// All yields the recorded steps, oldest first, with no copy of them: the
// journal is not to change meanwhile (a plan's, once run).
func (j *Journal) All() iter.Seq[Step] {
	return func(yield func(Step) bool) {
		j.mu.Lock()
		steps := j.steps
		j.mu.Unlock()
		for _, s := range steps {
			if !yield(s) {
				return
			}
		}
	}
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
	j.steps = append(slices.Clone(j.steps[:mark]), kept...) // not over what Steps returned
	j.mu.Unlock()
	if j.file == nil {
		return nil
	}
	return j.rewrite()
}

// Update replaces step i with s, and rewrites the file.
func (j *Journal) Update(i int, s Step) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if i < 0 || i >= len(j.steps) {
		return fmt.Errorf("no step %d", i)
	}
	j.steps = slices.Clone(j.steps) // not over what Steps returned
	j.steps[i] = s
	if j.file == nil {
		return nil
	}
	return j.rewrite()
}

// Renew gives the latest netns step before mark that made namespace name
// the identity of the namespace an undo made again in its place (see
// undo.Result.Renewed): teardown then knows the one that is there. The file
// is rewritten by the Truncate that follows.
func (j *Journal) Renew(mark int, name string, id kernel.NetnsID) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := min(mark, len(j.steps)) - 1; i >= 0; i-- {
		if s := j.steps[i]; s.Op == OpNetns && s.Name == name {
			s.Ino, s.Mnt, s.Pin = id.Ino, id.Mnt, id.Pin
			j.steps = slices.Clone(j.steps) // not over what Steps returned
			j.steps[i] = s
			return
		}
	}
}

// rewrite replaces the file with the steps kept, atomically: a crash
// leaves the old journal or the new one, never a truncated one.
func (j *Journal) rewrite() error {
	j.buf = j.buf[:0] // the new file has every step kept as done
	if err := WriteSteps(j.path, j.steps); err != nil {
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

// WriteSteps writes steps as done records to a new file at path.
func WriteSteps(path string, steps []Step) error {
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
