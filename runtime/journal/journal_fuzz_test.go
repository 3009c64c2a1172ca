package journal

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// Read reads what a killed run left: any bytes at all. It never
// panics, returns only whole records, and ignores a torn last line exactly:
// reading a file is reading it cut after its last newline.
//
//	go test -run='^$' -fuzz=FuzzReadJournal -fuzztime=20s ./runtime
func FuzzReadJournal(f *testing.F) {
	for _, seed := range journalSeeds(f) {
		f.Add(seed, uint16(len(seed)/2))
	}
	f.Add([]byte("{\"seq\":1,\"state\":\"intent\",\"op\":\"netns\",\"name\":\"a\"}\n{\"seq\":1,\"op\""), uint16(60))
	f.Add([]byte("{\"seq\":1,\"state\":\"void\"}\n{}\n{"), uint16(3))
	f.Add([]byte("\n\n"), uint16(1))
	f.Add([]byte("null\n"), uint16(0))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		steps, err := readJournalBytes(t, dir, "data", data)
		if n := bytes.Count(data, []byte("\n")); len(steps) > n {
			t.Fatalf("%d steps from %d lines", len(steps), n)
		}
		for i, s := range steps {
			if s.Op == "" {
				t.Errorf("step %d has no operation (err %v): %+v", i, err, s)
			}
		}
		whole := data[:bytes.LastIndexByte(data, '\n')+1]
		if wsteps, werr := readJournalBytes(t, dir, "whole", whole); (werr == nil) != (err == nil) || !reflect.DeepEqual(wsteps, steps) {
			t.Errorf("with its torn last line: %v, %v; without: %v, %v", steps, err, wsteps, werr)
		}
		if err != nil {
			return
		}
		// What was read, journaled again as a run journals it, reads back the
		// same, and so does that file cut at any byte of its last record.
		written := writeJournal(t, dir, steps)
		again, err := readJournalBytes(t, dir, "again", written)
		if err != nil || !sameSteps(again, steps) {
			t.Fatalf("journaled again, %v reads as %v, %v", steps, again, err)
		}
		c := int(cut) % (len(written) + 1)
		upTo := written[:bytes.LastIndexByte(written[:c], '\n')+1]
		torn, terr := readJournalBytes(t, dir, "torn", written[:c])
		want, _ := readJournalBytes(t, dir, "upto", upTo)
		if terr != nil || !reflect.DeepEqual(torn, want) {
			t.Errorf("cut at byte %d of %d: %v, %v; want %v", c, len(written), torn, terr, want)
		}
	})
}

// journalSeeds are journals as runs write them: done records, an intent
// without its done record, a void one.
func journalSeeds(f testing.TB) [][]byte {
	steps := []Step{
		{Pos: "lab.star:3:13", Op: OpNetns, Name: "blue", Ino: 4026532001, Alias: "nsrun:lab"},
		{Pos: "lab.star:4:12", Op: OpLink, Kind: "veth", Name: "veth0", PeerNS: "blue", PeerName: "veth1", Alias: "nsrun:lab", MAC: "52:54:00:0d:84:01"},
		{Pos: "lab.star:5:7", Op: OpAddr, NS: "blue", Name: "veth1", Addr: netip.MustParsePrefix("192.168.10.21/24")},
		{Pos: "lab.star:6:11", Op: OpRoute, NS: "blue", Route: &kernel.Route{Family: 4, Via: netip.MustParseAddr("192.168.10.1")}},
		{Pos: "lab.star:7:12", Op: OpSysctl, NS: "blue", Name: "net.ipv4.ip_forward", Old: "0"},
	}
	path := filepath.Join(f.TempDir(), "journal")
	j, err := Open(path)
	if err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	snap := func() {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	for _, s := range steps {
		if err := j.Add(s); err != nil {
			f.Fatal(err)
		}
		snap()
	}
	seq, _ := j.Intend(Step{Pos: "lab.star:8:7", Op: OpUp, Name: "veth0", Old: "down"})
	snap()
	j.Void(seq)
	snap()
	j.Intend(Step{Pos: "lab.star:9:7", Op: OpProc, NS: "blue", Name: "sleep", Pid: 42, Start: 7})
	snap()
	j.Close()
	return seeds
}

func readJournalBytes(t *testing.T, dir, name string, data []byte) ([]Step, error) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return Read(path)
}

// writeJournal journals steps through the Journal, as a run does, and
// returns the file.
func writeJournal(t *testing.T, dir string, steps []Step) []byte {
	t.Helper()
	path := filepath.Join(dir, "written")
	os.Remove(path)
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if err := j.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameSteps compares steps but for their numbering and state in the file,
// which journaling them again renews.
func sameSteps(a, b []Step) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.Seq, y.Seq, x.State, y.State = 0, 0, "", ""
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
