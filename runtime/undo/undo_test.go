package undo

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// A background process is stopped even when its namespace is deleted in the
// same rollback: it would keep the namespace, and itself, alive.
func TestProcessNeverMoot(t *testing.T) {
	m := moot([]journal.Step{{Op: journal.OpNetns, Name: "a", Ino: 1}, {Op: journal.OpProc, NS: "a", Pid: 42, Start: 7}})
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
	steps := []journal.Step{
		{Op: journal.OpNetns, Name: "blue", Ino: id.Ino, Alias: "nsrun:t"},
		{Op: journal.OpLink, Kind: "bridge", NS: "blue", Name: "br0", Alias: "nsrun:t"},
		{Op: journal.OpAddr, NS: "blue", Name: "br0", Addr: netip.MustParsePrefix("10.0.0.1/24")},
	}
	rec2 := &refusingNetnsDel{rec}
	r := Steps(rec2, "nsrun:t", steps)
	undone, kept, errs := r.Undone, r.Failed, r.Errs
	if len(errs) != 1 || len(undone) != 0 || len(kept) != 3 {
		t.Fatalf("undone %v, kept %v, errors %v; want all 3 kept, 1 error", undone, kept, errs)
	}
	if kept[0].Op != journal.OpNetns || kept[2].Op != journal.OpAddr {
		t.Errorf("kept out of journal order: %v", kept)
	}
}

// refusingNetnsDel is a kernel whose namespace deletions fail.
type refusingNetnsDel struct{ *kernel.Recorder }

func (refusingNetnsDel) NetnsDel(string, string, kernel.NetnsID) error { return errors.New("busy") }

// An object that is no longer the lab's is left alone and reported; the
// lab's own is gone, so nothing is left to undo.
func TestUndoLeavesReplacedObjectAlone(t *testing.T) {
	rec := kernel.NewRecorder()
	rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: "br0", Alias: "someone-else"})
	r := Steps(rec, "nsrun:t", []journal.Step{{Op: journal.OpLink, Kind: "bridge", Name: "br0", Alias: "nsrun:t", Pos: "x.star:3:4"}})
	if len(r.Failed) != 0 || len(r.Errs) != 0 || len(r.Spared) != 1 || !strings.Contains(r.Spared[0].Error(), "x.star:3:4") {
		t.Fatalf("failed = %v, errs = %v, spared = %v", r.Failed, r.Errs, r.Spared)
	}
	if _, err := rec.LinkGet("", "br0"); err != nil {
		t.Errorf("the other bridge was removed")
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
		steps := []journal.Step{
			{Op: journal.OpNetns, Name: "b", Ino: id.Ino, Alias: "nsrun:t"},
			{Op: journal.OpLink, Kind: "veth", Name: "fp0", PeerName: "fq0", Alias: "nsrun:t"},
			{Op: journal.OpMove, Name: "fq0", New: "b", State: journal.StateIntent},
		}
		if r := Steps(rec, "nsrun:t", steps); len(r.Failed) != 0 || len(r.Errs) != 0 {
			t.Errorf("moved=%v: kept %v, errors %v", moved, r.Failed, r.Errs)
		}
		for _, name := range []string{"fp0", "fq0"} {
			if _, err := rec.LinkGet("", name); err == nil {
				t.Errorf("moved=%v: %s is left in the host", moved, name)
			}
		}
	}
}

// A plan's journal: in memory, its length not known ahead.
func BenchmarkJournalPlan(b *testing.B) {
	s := journal.Step{Op: journal.OpAddr, NS: "h1", Name: "eth0", Addr: netip.MustParsePrefix("10.0.0.1/8"), Pos: "star.star:14:13"}
	b.ReportAllocs()
	for b.Loop() {
		j, _ := journal.Open("")
		for range 4000 {
			seq, _ := j.Intend(s)
			j.Done(seq, s, s)
		}
	}
}
