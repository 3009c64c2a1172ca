package journal

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// A journal cut anywhere reads as the records before the cut: a torn last
// line is ignored, and a change whose done record is missing is pending (it
// may have been made), so that recovery undoes it too.
func TestTornJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, err := Open(path)
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
		steps, err := Read(path)
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

// A done record that only confirms its intent is a bare {"seq":N} that goes
// out with the next record; until then the change reads as an intent. One
// that carries what the undo needs (an inode) is written at once.
func TestJournalConfirmations(t *testing.T) {
	j, path := tempJournal(t)
	read := func() []Step {
		t.Helper()
		steps, err := Read(path)
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
	j, err := Open(filepath.Join(b.TempDir(), "journal"))
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

// tempJournal opens a journal file in a temporary directory, closed at the
// test's end.
func tempJournal(t *testing.T) (*Journal, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, path
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
	steps, err := Read(path)
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

// TestDoneRecord checks the reader's fast path takes exactly the lines write
// writes for a change made as intended, and leaves anything else to the JSON
// decoder.
func TestDoneRecord(t *testing.T) {
	for line, want := range map[string]int{
		`{"seq":1}` + "\n":    1,
		`{"seq":4096}` + "\n": 4096,
	} {
		if got, ok := doneRecord([]byte(line)); !ok || got != want {
			t.Errorf("doneRecord(%q) = %d, %v; want %d, true", line, got, ok, want)
		}
	}
	for _, line := range []string{
		`{"seq":1}`, `{"seq":}` + "\n", `{"seq":01}` + "\n", `{"seq":-1}` + "\n",
		`{"seq":1,"op":"netns"}` + "\n", `{"seq": 1}` + "\n", `{"seq":1234567890123456789}` + "\n",
	} {
		if _, ok := doneRecord([]byte(line)); ok {
			t.Errorf("doneRecord(%q) took a line that is not a done record", line)
		}
	}
}

// A 1,000-host star's journal read back, as apply, down and recover read a
// lab's: its intents and their done records.
func BenchmarkJournalRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "journal")
	j, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	for h := range 1000 {
		ns, host := fmt.Sprintf("h%d", h), fmt.Sprintf("v-h%d", h)
		for _, s := range []Step{
			{Pos: "star.star:18:15", Op: OpNetns, Name: ns, Alias: "nsrun:star", Ino: 4026532001 + uint64(h)},
			{Pos: "star.star:19:21", Op: OpLink, Kind: "veth", Name: host, Alias: "nsrun:star", MAC: "26:18:39:d5:4e:51", PeerNS: ns, PeerName: "eth0", PeerMAC: "be:b7:36:1d:bf:63"},
			{Pos: "star.star:20:16", Op: OpMaster, Name: host, New: "br-star"},
			{Pos: "star.star:20:23", Op: OpUp, Name: host, Old: "down", New: "up"},
			{Pos: "star.star:22:13", Op: OpAddr, NS: ns, Name: "eth0", Addr: netip.MustParsePrefix("10.0.0.1/8")},
			{Pos: "star.star:27:11", Op: OpUp, NS: ns, Name: "eth0", Old: "down", New: "up"},
		} {
			seq, err := j.Intend(s)
			if err == nil {
				err = j.Done(seq, s, s)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if steps, err := Read(path); err != nil || len(steps) != 6000 {
			b.Fatal(len(steps), err)
		}
	}
}
