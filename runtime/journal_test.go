package runtime

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// A rollback undoes newest first, and does not undo one by one what dies
// with a namespace deleted in the same rollback.
func TestUndoOrderAndBatching(t *testing.T) {
	rec := kernel.NewRecorder()
	j, _ := OpenJournal("")
	rt := New("t", rec, j)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	id, err := rec.NetnsAdd(kernel.NetnsSpec{Name: "blue", Tag: "nsrun:t"})
	must(err)
	must(rt.Change(nil, Step{Op: OpNetns, Name: "blue", Ino: id.Ino, Alias: rt.Tag()}, done))
	must(rec.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: "v0", PeerName: "v1", PeerNS: "blue", Alias: rt.Tag()}))
	must(rt.Change(nil, Step{Op: OpLink, Kind: "veth", Name: "v0", PeerNS: "blue", PeerName: "v1", Alias: rt.Tag()}, done))
	must(rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: "br0", Alias: rt.Tag()}))
	must(rt.Change(nil, Step{Op: OpLink, Kind: "bridge", Name: "br0", Alias: rt.Tag()}, done))
	p := netip.MustParsePrefix("10.0.0.1/24")
	must(rec.AddrAdd("blue", "v1", p))
	must(rt.Change(nil, Step{Op: OpAddr, NS: "blue", Name: "v1", Addr: p}, done))
	must(rec.AddrAdd("", "br0", p))
	must(rt.Change(nil, Step{Op: OpAddr, Name: "br0", Addr: p}, done))
	must(rec.LinkSetMaster("", "v0", "br0"))
	must(rt.Change(nil, Step{Op: OpMaster, Name: "v0"}, done))

	rec.Log = nil
	undone, failed := rt.Rollback(0)
	if len(failed) > 0 {
		t.Fatal(failed)
	}
	if len(undone) != 6 {
		t.Errorf("undone %d steps, want 6", len(undone))
	}
	// br0's address goes with br0; v0, its port state and v1's address go
	// with blue.
	want := []string{"ip link del br0", "ip netns del blue"}
	if !reflect.DeepEqual(rec.Log, want) {
		t.Errorf("undo made %q, want %q", rec.Log, want)
	}
	if j.Len() != 0 {
		t.Errorf("journal keeps %d steps", j.Len())
	}
}

// A background process is stopped even when its namespace is deleted in the
// same rollback: it would keep the namespace, and itself, alive.
func TestProcessNeverMoot(t *testing.T) {
	m := moot([]Step{{Op: OpNetns, Name: "a", Ino: 1}, {Op: OpProc, NS: "a", Pid: 42, Start: 7}})
	if _, covered := m.by[1]; covered {
		t.Error("the process in a deleted namespace is not stopped")
	}
}

// When a namespace's deletion fails, what was left to it is kept for the
// retry, not reported as undone.
func TestCoveredStepsKeptWhenTheirUndoFails(t *testing.T) {
	rec := kernel.NewRecorder()
	id, _ := rec.NetnsAdd(kernel.NetnsSpec{Name: "blue", Tag: "nsrun:t"})
	rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", NS: "blue", Name: "br0", Alias: "nsrun:t"})
	steps := []Step{
		{Op: OpNetns, Name: "blue", Ino: id.Ino, Alias: "nsrun:t"},
		{Op: OpLink, Kind: "bridge", NS: "blue", Name: "br0", Alias: "nsrun:t"},
		{Op: OpAddr, NS: "blue", Name: "br0", Addr: netip.MustParsePrefix("10.0.0.1/24")},
	}
	rec2 := &refusingNetnsDel{rec}
	r := Undo(rec2, "nsrun:t", steps)
	undone, kept, errs := r.Undone, r.Failed, r.Errs
	if len(errs) != 1 || len(undone) != 0 || len(kept) != 3 {
		t.Fatalf("undone %v, kept %v, errors %v; want all 3 kept, 1 error", undone, kept, errs)
	}
	if kept[0].Op != OpNetns || kept[2].Op != OpAddr {
		t.Errorf("kept out of journal order: %v", kept)
	}
}

// refusingNetnsDel is a kernel whose namespace deletions fail.
type refusingNetnsDel struct{ *kernel.Recorder }

func (refusingNetnsDel) NetnsDel(string, string, kernel.NetnsID) error { return errors.New("busy") }

// A rollback to a mark undoes only what came after it.
func TestRollbackToMark(t *testing.T) {
	rec := kernel.NewRecorder()
	j, _ := OpenJournal("")
	rt := New("t", rec, j)
	for _, name := range []string{"a", "b"} {
		id, _ := rec.NetnsAdd(kernel.NetnsSpec{Name: name, Tag: "nsrun:t"})
		rt.Change(nil, Step{Op: OpNetns, Name: name, Ino: id.Ino, Alias: rt.Tag()}, done)
	}
	mark := j.Len()
	id, _ := rec.NetnsAdd(kernel.NetnsSpec{Name: "c", Tag: "nsrun:t"})
	rt.Change(nil, Step{Op: OpNetns, Name: "c", Ino: id.Ino, Alias: rt.Tag()}, done)
	rt.Rollback(mark)
	for name, want := range map[string]bool{"a": true, "b": true, "c": false} {
		if got, _ := rec.NetnsExists(name); got != want {
			t.Errorf("netns %s exists = %v, want %v", name, got, want)
		}
	}
}

// An object that is no longer the lab's is left alone and reported; the
// lab's own is gone, so nothing is left to undo.
func TestUndoLeavesReplacedObjectAlone(t *testing.T) {
	rec := kernel.NewRecorder()
	rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: "br0", Alias: "someone-else"})
	r := Undo(rec, "nsrun:t", []Step{{Op: OpLink, Kind: "bridge", Name: "br0", Alias: "nsrun:t", Pos: "x.star:3:4"}})
	if len(r.Failed) != 0 || len(r.Errs) != 0 || len(r.Spared) != 1 || !strings.Contains(r.Spared[0].Error(), "x.star:3:4") {
		t.Fatalf("failed = %v, errs = %v, spared = %v", r.Failed, r.Errs, r.Spared)
	}
	if _, err := rec.LinkGet("", "br0"); err != nil {
		t.Errorf("the other bridge was removed")
	}
}

// A journal cut anywhere reads as the records before the cut: a torn last
// line is ignored, and a change whose done record is missing is pending (it
// may have been made), so that recovery undoes it too.
func TestTornJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	j.Add(Step{Op: OpNetns, Name: "a", Ino: 1, Pos: "x.star:1:1"})
	j.Add(Step{Op: OpNetns, Name: "b", Ino: 2, Pos: "x.star:2:1"})
	j.Close()
	full, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(full), "\n") // intent a, done a, intent b, done b, ""
	ends := []int{}
	n := 0
	for _, l := range lines[:4] {
		n += len(l)
		ends = append(ends, n)
	}
	for cut := ends[1]; cut <= len(full); cut++ {
		os.WriteFile(path, full[:cut], 0o644)
		steps, err := ReadJournal(path)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		var got []string
		for _, s := range steps {
			got = append(got, s.Name+":"+s.State)
		}
		want := "a:"
		switch {
		case cut == len(full):
			want = "a: b:"
		case cut >= ends[2]:
			want = "a: b:intent"
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("cut at %d: %v, want %s", cut, got, want)
		}
	}
}

// A run killed around a move: the pending move is not taken for done, so
// the link is deleted where it was, and nothing waits for it to vanish with
// the namespace it may never have reached.
func TestPendingMove(t *testing.T) {
	for _, moved := range []bool{false, true} {
		rec := kernel.NewRecorder()
		id, _ := rec.NetnsAdd(kernel.NetnsSpec{Name: "b", Tag: "nsrun:t"})
		rec.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: "fp0", PeerName: "fq0", Alias: "nsrun:t"})
		if moved {
			rec.LinkMove("", "fq0", "b")
		}
		steps := []Step{
			{Op: OpNetns, Name: "b", Ino: id.Ino, Alias: "nsrun:t"},
			{Op: OpLink, Kind: "veth", Name: "fp0", PeerName: "fq0", Alias: "nsrun:t"},
			{Op: OpMove, Name: "fq0", New: "b", State: StateIntent},
		}
		if r := Undo(rec, "nsrun:t", steps); len(r.Failed) != 0 || len(r.Errs) != 0 {
			t.Errorf("moved=%v: kept %v, errors %v", moved, r.Failed, r.Errs)
		}
		for _, name := range []string{"fp0", "fq0"} {
			if _, err := rec.LinkGet("", name); err == nil {
				t.Errorf("moved=%v: %s is left in the host", moved, name)
			}
		}
	}
}

// A link created and then moved into a namespace that outlives the rollback
// (a REPL input rolled back to its mark) is deleted where it is now.
func TestUndoMovedLink(t *testing.T) {
	rec := kernel.NewRecorder()
	j, _ := OpenJournal("")
	rt := New("t", rec, j)
	id, _ := rec.NetnsAdd(kernel.NetnsSpec{Name: "blue", Tag: "nsrun:t"})
	rt.Change(nil, Step{Op: OpNetns, Name: "blue", Ino: id.Ino, Alias: rt.Tag()}, done)
	mark := j.Len()
	rec.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: "v0", PeerName: "v1", Alias: rt.Tag()})
	rt.Change(nil, Step{Op: OpLink, Kind: "veth", Name: "v0", PeerName: "v1", Alias: rt.Tag()}, done)
	rec.LinkMove("", "v1", "blue")
	rt.Change(nil, Step{Op: OpMove, Name: "v1", New: "blue"}, done)
	rec.LinkMove("", "v0", "blue")
	rt.Change(nil, Step{Op: OpMove, Name: "v0", New: "blue"}, done)
	if _, failed := rt.Rollback(mark); len(failed) > 0 {
		t.Fatal(failed)
	}
	for _, name := range []string{"v0", "v1"} {
		if _, err := rec.LinkGet("blue", name); err == nil {
			t.Errorf("%s is still in blue", name)
		}
	}
}

// done is the change function of a change a test made itself.
func done(kernel.Kernel, *Step) error { return nil }

// Recovery decides on the record as it is once it holds the lab's lock: a
// run that finishes between recovery's first read (state running) and its
// lock (free once the run exits) leaves its lab up, and it stays up.
func TestRecoverRereadsUnderLock(t *testing.T) {
	state := t.TempDir()
	unlock, _ := lockState(state)
	lab, j, err := CreateLab(state, LabInfo{Name: "a"})
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	beforeLock = func(string) {
		lab.SetState(LabUp) // the run finishes...
		lab.Unlock()        // ...and exits
	}
	defer func() { beforeLock = nil }()
	for _, r := range Recover(state, kernel.NewRecorder()) {
		if len(r.Failed) != 0 {
			t.Fatal(r.Failed)
		}
	}
	if _, err := OpenLab(state, "a"); err != nil {
		t.Errorf("recover removed a lab that is up: %v", err)
	}
}

// A done record that only confirms its intent is a bare {"seq":N} that goes
// out with the next record; until then the change reads as an intent. One
// that carries what the undo needs (an inode) is written at once.
func TestJournalConfirmations(t *testing.T) {
	j, path := tempJournal(t)
	read := func() []Step {
		t.Helper()
		steps, err := ReadJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		return steps
	}
	ns := Step{Op: OpNetns, Name: "blue", Pos: "r.star:1:1"}
	seq, _ := j.Intend(ns)
	made := ns
	made.Ino = 7 // learnt by the change
	if err := j.Done(seq, ns, made); err != nil {
		t.Fatal(err)
	}
	if s := read(); len(s) != 1 || s[0].State != "" || s[0].Ino != 7 {
		t.Fatalf("after a done record with an inode: %+v", s)
	}

	up := Step{Op: OpUp, NS: "blue", Name: "lo", Old: "down", Pos: "r.star:1:1"}
	seq, _ = j.Intend(up)
	if err := j.Done(seq, up, up); err != nil {
		t.Fatal(err)
	}
	if s := read(); len(s) != 2 || s[1].State != StateIntent {
		t.Fatalf("a confirmation not yet written: want the change as an intent, got %+v", s)
	}
	addr := Step{Op: OpAddr, NS: "blue", Name: "lo", Addr: netip.MustParsePrefix("10.0.0.1/8"), Pos: "r.star:2:1"}
	seq, _ = j.Intend(addr)
	if s := read(); len(s) != 3 || s[1].State != "" || s[2].State != StateIntent {
		t.Fatalf("the next intent carries the confirmation: got %+v", s)
	}
	j.Done(seq, addr, addr)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	s := read()
	if len(s) != 3 || s[2].State != "" || s[2] != j.Steps()[2] {
		t.Fatalf("after Flush: got %+v, want %+v", s, j.Steps())
	}
	b, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(b), "{\"seq\":3}\n") {
		t.Errorf("the last record is not a bare confirmation:\n%s", b)
	}

	// Changes whose undo differs for an intent are confirmed at once: a
	// move, a link, another package's op.
	RegisterUndo("test-foreign", func(kernel.Kernel, Step) error { return nil })
	defer delete(undoers, "test-foreign")
	for i, st := range []Step{
		{Op: OpMove, NS: "blue", Name: "lo2", New: kernel.Host, Pos: "r.star:3:1"},
		{Op: OpLink, Kind: "bridge", Name: "br0", Alias: "nsrun:t", Pos: "r.star:4:1"},
		{Op: "test-foreign", NS: "blue", Name: "x", Pos: "r.star:5:1"},
	} {
		seq, _ = j.Intend(st)
		j.Done(seq, st, st)
		if s := read(); len(s) != 4+i || s[3+i].State != "" {
			t.Fatalf("the done record of %s waits: got %+v", st.Op, s)
		}
	}
}

// One change journalled: its intent, and its done record (a confirmation
// that goes out with the next intent), to a file as a run writes them.
func BenchmarkJournalChange(b *testing.B) {
	j, err := OpenJournal(filepath.Join(b.TempDir(), "journal"))
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	s := Step{Op: OpAddr, NS: "h1", Name: "eth0", Addr: netip.MustParsePrefix("10.0.0.1/8"), Pos: "star.star:14:13"}
	b.ReportAllocs()
	for b.Loop() {
		seq, err := j.Intend(s)
		if err != nil {
			b.Fatal(err)
		}
		if err := j.Done(seq, s, s); err != nil {
			b.Fatal(err)
		}
	}
}

// A plan's journal: in memory, its length not known ahead.
func BenchmarkJournalPlan(b *testing.B) {
	s := Step{Op: OpAddr, NS: "h1", Name: "eth0", Addr: netip.MustParsePrefix("10.0.0.1/8"), Pos: "star.star:14:13"}
	b.ReportAllocs()
	for b.Loop() {
		j, _ := OpenJournal("")
		for range 4000 {
			seq, _ := j.Intend(s)
			j.Done(seq, s, s)
		}
	}
}

// A run makes its changes one at a time in the order of their intents: the
// intents after a change that is neither confirmed nor held back
// (confirmLater) were queued and never begun, and are not read back, so that
// no undo is tried for them (a name's placeholder file is not the lab's).
func TestIntentsNeverBegun(t *testing.T) {
	j, path := tempJournal(t)
	intend := func(s Step) int {
		t.Helper()
		seq, err := j.Intend(s)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	a := Step{Op: OpNetns, Name: "a", Ino: 1}
	j.Done(intend(a), a, a)
	intend(Step{Op: OpUp, NS: "a", Name: "lo", Old: "down"}) // may be made: its confirmation waits
	intend(Step{Op: OpNetns, Name: "b"})                     // being made
	intend(Step{Op: OpAddr, NS: "b", Name: "lo", Addr: netip.MustParsePrefix("10.0.0.1/8")})
	intend(Step{Op: OpNetns, Name: "c"})
	steps, err := ReadJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.Op+" "+s.Name+" "+s.State)
	}
	want := []string{"netns a ", "up lo intent", "netns b intent"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read %q, want %q", got, want)
	}
}

// groupKernel deletes host links by group, as the real one does, and
// records what it is asked to wait for.
type groupKernel struct {
	*kernel.Recorder
	settled []kernel.NamedLink
}

func (g *groupKernel) LinkDelGroup(ns, tag string, names []string) ([]string, error) {
	for _, n := range names {
		g.Recorder.LinkDel(ns, n, kernel.Fingerprint{Alias: tag})
	}
	return names, nil
}

func (g *groupKernel) Settle(ns string, names []kernel.NamedLink) error {
	g.settled = append(g.settled, names...)
	return nil
}

// The host ends of veths deleted in one request by device group are gone
// when the kernel answers: a teardown does not wait for them one by one.
func TestNoSettleForLinksDeletedByGroup(t *testing.T) {
	g := &groupKernel{Recorder: kernel.NewRecorder()}
	j, _ := OpenJournal("")
	rt := New("t", g, j)
	id, _ := g.NetnsAdd(kernel.NetnsSpec{Name: "b", Tag: rt.Tag()})
	if err := rt.Change(nil, Step{Op: OpNetns, Name: "b", Ino: id.Ino, Alias: rt.Tag()}, done); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"v0", "v1"} {
		g.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: n, PeerName: "eth-" + n, PeerNS: "b", Alias: rt.Tag()})
		if err := rt.Change(nil, Step{Op: OpLink, Kind: "veth", Name: n, PeerNS: "b", PeerName: "eth-" + n, Alias: rt.Tag()}, done); err != nil {
			t.Fatal(err)
		}
	}
	if _, failed := rt.Rollback(0); len(failed) > 0 {
		t.Fatal(failed)
	}
	if len(g.settled) > 0 {
		t.Errorf("waited for %q, deleted by group", g.settled)
	}
}

// tempJournal opens a journal file in a temporary directory, closed at the
// test's end.
func tempJournal(t *testing.T) (*Journal, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, path
}

// Steps is a copy: a rollback that rewrites the journal's steps does not
// change what a caller holds.
func TestJournalStepsIsACopy(t *testing.T) {
	rec := kernel.NewRecorder()
	j, _ := OpenJournal("")
	rt := New("t", rec, j)
	for _, n := range []string{"a", "b"} {
		rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: n, Alias: rt.Tag()})
		if err := rt.Change(nil, Step{Op: OpLink, Kind: "bridge", Name: n, Alias: rt.Tag()}, done); err != nil {
			t.Fatal(err)
		}
	}
	held := j.Steps()
	rt.Rollback(1)
	rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: "c", Alias: rt.Tag()})
	rt.Change(nil, Step{Op: OpLink, Kind: "bridge", Name: "c", Alias: rt.Tag()}, done)
	if len(held) != 2 || held[1].Name != "b" {
		t.Errorf("the steps held changed: %+v", held)
	}
}

// A change that fails and whose void record cannot be written reports both.
func TestVoidFailureReported(t *testing.T) {
	j, _ := tempJournal(t)
	rt := New("t", kernel.NewRecorder(), j)
	err := rt.Change(nil, Step{Op: OpUp, Name: "x"}, func(kernel.Kernel, *Step) error {
		j.file.Close() // the journal's file fails from now on
		return errors.New("boom")
	})
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "writing the journal") {
		t.Errorf("err = %v", err)
	}
}
