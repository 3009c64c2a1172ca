package engine

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// A rollback undoes newest first, and does not undo one by one what dies
// with a namespace deleted in the same rollback.
func TestUndoOrderAndBatching(t *testing.T) {
	rec := kernel.NewRecorder()
	j, _ := journal.Open("")
	rt := New("t", rec, j)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	id, err := rec.NetnsAdd(kernel.NetnsSpec{Name: "blue", Tag: "nsrun:t"})
	must(err)
	must(rt.Change(nil, journal.Step{Op: journal.OpNetns, Name: "blue", Ino: id.Ino, Alias: rt.Tag()}, done))
	must(rec.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: "v0", PeerName: "v1", PeerNS: "blue", Alias: rt.Tag()}))
	must(rt.Change(nil, journal.Step{Op: journal.OpLink, Kind: "veth", Name: "v0", PeerNS: "blue", PeerName: "v1", Alias: rt.Tag()}, done))
	must(rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: "br0", Alias: rt.Tag()}))
	must(rt.Change(nil, journal.Step{Op: journal.OpLink, Kind: "bridge", Name: "br0", Alias: rt.Tag()}, done))
	p := netip.MustParsePrefix("10.0.0.1/24")
	must(rec.AddrAdd("blue", "v1", p))
	must(rt.Change(nil, journal.Step{Op: journal.OpAddr, NS: "blue", Name: "v1", Addr: p}, done))
	must(rec.AddrAdd("", "br0", p))
	must(rt.Change(nil, journal.Step{Op: journal.OpAddr, Name: "br0", Addr: p}, done))
	must(rec.LinkSetMaster("", "v0", "br0"))
	must(rt.Change(nil, journal.Step{Op: journal.OpMaster, Name: "v0"}, done))

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

// A rollback to a mark undoes only what came after it.
func TestRollbackToMark(t *testing.T) {
	rec := kernel.NewRecorder()
	j, _ := journal.Open("")
	rt := New("t", rec, j)
	for _, name := range []string{"a", "b"} {
		id, _ := rec.NetnsAdd(kernel.NetnsSpec{Name: name, Tag: "nsrun:t"})
		rt.Change(nil, journal.Step{Op: journal.OpNetns, Name: name, Ino: id.Ino, Alias: rt.Tag()}, done)
	}
	mark := j.Len()
	id, _ := rec.NetnsAdd(kernel.NetnsSpec{Name: "c", Tag: "nsrun:t"})
	rt.Change(nil, journal.Step{Op: journal.OpNetns, Name: "c", Ino: id.Ino, Alias: rt.Tag()}, done)
	rt.Rollback(mark)
	for name, want := range map[string]bool{"a": true, "b": true, "c": false} {
		if got, _ := rec.NetnsExists(name); got != want {
			t.Errorf("netns %s exists = %v, want %v", name, got, want)
		}
	}
}

// A link created and then moved into a namespace that outlives the rollback
// (a REPL input rolled back to its mark) is deleted where it is now.
func TestUndoMovedLink(t *testing.T) {
	rec := kernel.NewRecorder()
	j, _ := journal.Open("")
	rt := New("t", rec, j)
	id, _ := rec.NetnsAdd(kernel.NetnsSpec{Name: "blue", Tag: "nsrun:t"})
	rt.Change(nil, journal.Step{Op: journal.OpNetns, Name: "blue", Ino: id.Ino, Alias: rt.Tag()}, done)
	mark := j.Len()
	rec.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: "v0", PeerName: "v1", Alias: rt.Tag()})
	rt.Change(nil, journal.Step{Op: journal.OpLink, Kind: "veth", Name: "v0", PeerName: "v1", Alias: rt.Tag()}, done)
	rec.LinkMove("", "v1", "blue")
	rt.Change(nil, journal.Step{Op: journal.OpMove, Name: "v1", New: "blue"}, done)
	rec.LinkMove("", "v0", "blue")
	rt.Change(nil, journal.Step{Op: journal.OpMove, Name: "v0", New: "blue"}, done)
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
func done(kernel.Kernel, *journal.Step) error { return nil }

// groupKernel deletes host links by group, as the real one does, and
// records what it is asked to wait for.
type groupKernel struct {
	*kernel.Recorder
	settled []kernel.NamedLink
}

// The host ends of veths deleted in one request by device group are gone
// when the kernel answers: a teardown does not wait for them one by one.
func TestNoSettleForLinksDeletedByGroup(t *testing.T) {
	g := &groupKernel{Recorder: kernel.NewRecorder()}
	j, _ := journal.Open("")
	rt := New("t", g, j)
	id, _ := g.NetnsAdd(kernel.NetnsSpec{Name: "b", Tag: rt.Tag()})
	if err := rt.Change(nil, journal.Step{Op: journal.OpNetns, Name: "b", Ino: id.Ino, Alias: rt.Tag()}, done); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"v0", "v1"} {
		g.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: n, PeerName: "eth-" + n, PeerNS: "b", Alias: rt.Tag()})
		if err := rt.Change(nil, journal.Step{Op: journal.OpLink, Kind: "veth", Name: n, PeerNS: "b", PeerName: "eth-" + n, Alias: rt.Tag()}, done); err != nil {
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

// Steps is a copy: a rollback that rewrites the journal's steps does not
// change what a caller holds.
func TestJournalStepsIsACopy(t *testing.T) {
	rec := kernel.NewRecorder()
	j, _ := journal.Open("")
	rt := New("t", rec, j)
	for _, n := range []string{"a", "b"} {
		rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: n, Alias: rt.Tag()})
		if err := rt.Change(nil, journal.Step{Op: journal.OpLink, Kind: "bridge", Name: n, Alias: rt.Tag()}, done); err != nil {
			t.Fatal(err)
		}
	}
	held := j.Steps()
	rt.Rollback(1)
	rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: "c", Alias: rt.Tag()})
	rt.Change(nil, journal.Step{Op: journal.OpLink, Kind: "bridge", Name: "c", Alias: rt.Tag()}, done)
	if len(held) != 2 || held[1].Name != "b" {
		t.Errorf("the steps held changed: %+v", held)
	}
}

// A change that fails and whose void record cannot be written reports both.
func TestVoidFailureReported(t *testing.T) {
	j, _ := tempJournal(t)
	rt := New("t", kernel.NewRecorder(), j)
	err := rt.Change(nil, journal.Step{Op: journal.OpUp, Name: "x"}, func(kernel.Kernel, *journal.Step) error {
		j.Close() // the journal's file fails from now on
		return errors.New("boom")
	})
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "writing the journal") {
		t.Errorf("err = %v", err)
	}
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

// tempJournal opens a journal in a test's temporary directory.
func tempJournal(t *testing.T) (*journal.Journal, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal")
	j, err := journal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, path
}
