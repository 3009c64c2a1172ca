package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// Journals and records someone else wrote, cut, corrupted or deleted: each
// is reported clearly, nothing outside the lab is touched, and what can be
// undone is undone.

// forgeDecoys makes objects no lab made — a veth pair with an address and
// an MTU of its own, one end a port of a bridge, a named namespace — and
// returns a description of them and of the host's ip_forward.
func forgeDecoys(t *testing.T) func() string {
	t.Helper()
	for _, c := range [][]string{
		{"link", "add", "fg0", "address", "02:00:f0:00:00:01", "mtu", "1400", "type", "veth", "peer", "name", "fg1"},
		{"link", "add", "fgbr", "type", "bridge"},
		{"link", "set", "fg1", "master", "fgbr"},
		{"addr", "add", "10.77.0.1/24", "dev", "fg0"},
		{"link", "set", "fg0", "up"},
		{"netns", "add", "fgns"},
	} {
		nstest.Ip(t, "", c...)
	}
	t.Cleanup(func() {
		nstest.Ip(t, "", "link", "del", "fg0")
		nstest.Ip(t, "", "link", "del", "fgbr")
		nstest.Ip(t, "", "netns", "del", "fgns")
	})
	return func() string {
		fwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return nstest.StripTimers(nstest.Ip(t, "", "-d", "-j", "link", "show", "fg0")+
			nstest.Ip(t, "", "-d", "-j", "link", "show", "fg1")+
			nstest.Ip(t, "", "-d", "-j", "link", "show", "fgbr")+
			nstest.Ip(t, "", "-j", "addr", "show", "fg0")) +
			fmt.Sprint(netnsInode(t, "fgns")) + "ip_forward=" + string(fwd)
	}
}

// forgedSteps are journal records naming the decoys: what issue 12 planted.
func forgedSteps(t *testing.T, tag string) string {
	ino := netnsInode(t, "fgns")
	return fmt.Sprintf(`{"seq":1,"pos":"x:1:1","op":"netns","name":"fgns","ino":%d,"alias":%q}
{"seq":2,"pos":"x:2:1","op":"link","name":"fg0","kind":"veth","alias":"","mac":"02:00:f0:00:00:01","peer":"fg1"}
{"seq":3,"pos":"x:3:1","op":"link","name":"fgbr","kind":"bridge","alias":%q,"mac":"02:00:f0:00:00:01"}
{"seq":4,"pos":"x:4:1","op":"up","name":"fg0","old":"down"}
{"seq":5,"pos":"x:5:1","op":"addr","name":"fg0","addr":"10.77.0.1/24"}
{"seq":6,"pos":"x:6:1","op":"mtu","name":"fg0","old":"1500"}
{"seq":7,"pos":"x:7:1","op":"master","name":"fg1","old":""}
{"seq":8,"pos":"x:8:1","op":"sysctl","name":"net.ipv4.ip_forward","old":"1","new":"0"}
{"seq":9,"pos":"x:9:1","op":"route","route":{"Dst":"10.77.0.0/24","Family":4,"Dev":"fg0"}}
`, ino, tag, tag)
}

// A planted lab record (a lab id nsrun never issued) naming decoys: no
// command acts on it (issue 12's seventh finding: one `nsrun ls` deleted an
// untagged veth and a namespace, set a decoy down, removed its address,
// changed its MTU, released it from its bridge and flipped ip_forward).
func TestForgedLabRecord(t *testing.T) {
	nstest.Kernel(t)
	view := forgeDecoys(t)
	before := view()
	dir := filepath.Join(nstest.StateDir, "forged")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "lab.json"), []byte(`{"name":"forged","id":"0123456789ab","state":"running","pid":999999}`), 0o644)
	os.WriteFile(filepath.Join(dir, "journal"), []byte(forgedSteps(t, "nsrun:forged")), 0o644)
	if r := nsrun(t, "ls"); !strings.Contains(r.stdout, "unverified") || !strings.Contains(r.stderr, "not written by nsrun") {
		t.Errorf("ls: %+v", r)
	}
	if r := nsrun(t, "down", "forged"); r.code != 2 || !strings.Contains(r.stderr, "not written by nsrun") {
		t.Errorf("down: %+v", r)
	}
	nsrun(t, "recover")
	if after := view(); after != before {
		t.Errorf("the decoys changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
	r := nsrun(t, "gc")
	if !strings.Contains(r.stdout, "record "+dir) {
		t.Errorf("gc does not list the planted record: %+v", r)
	}
	if r := nsrun(t, "gc", "--yes"); r.code != 0 {
		t.Errorf("gc --yes: %+v", r)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("gc --yes left the planted record")
	}
	if after := view(); after != before {
		t.Errorf("the decoys changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// Records naming decoys appended to a real lab's journal: every undo checks
// that what it changes carries the lab's tag, so `down` removes the lab and
// leaves the decoys as they are.
func TestForgedRecordsInALabsJournal(t *testing.T) {
	nstest.Kernel(t)
	view := forgeDecoys(t)
	if r := nsrun(t, write(t, "fj.star", "n = netns(\"fj\")\nveth(\"fj0\", \"fj1\", peer_netns = n)\n")); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	before := view()
	journal := filepath.Join(nstest.StateDir, "fj", "journal")
	f, err := os.OpenFile(journal, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.ReplaceAll(forgedSteps(t, "nsrun:fj"), `"seq":`, `"seq":10`) // after the lab's own
	f.WriteString(forged)
	f.Close()
	r := nsrun(t, "down", "fj")
	if r.code != 0 {
		t.Errorf("down: %+v", r)
	}
	if after := view(); after != before {
		t.Errorf("the decoys changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// A lab's journal cut short, with garbage in it, or deleted, and a lab's
// record deleted: what the journal still says is undone, what carries the
// lab's tag is removed, the damage is reported (exit 3), and a second
// `down` has nothing left to do. Before, a damaged journal undid nothing
// and down exited 3 forever; a cut or deleted one made down say "removed"
// while objects remained; a deleted record made the next `ls` delete the
// lab's directory.
func TestDamagedJournals(t *testing.T) {
	nstest.Kernel(t)
	recipe := write(t, "dj.star", `n = netns("dj")
m = netns("dj2")
a, b = veth("dj0", "dj1", peer_netns = n)
c, d = veth("dj2", "dj3", peer_netns = m)
bridge("djbr")
`)
	journal := filepath.Join(nstest.StateDir, "dj", "journal")
	for _, tc := range []struct {
		name   string
		damage func(j []byte) []byte
		want   string
	}{
		{"garbage", func(j []byte) []byte {
			lines := bytes.SplitAfter(j, []byte("\n"))
			lines[2] = []byte("\x00\x01garbage}\n")
			return bytes.Join(lines, nil)
		}, "unreadable"},
		{"cut", func(j []byte) []byte { return j[:len(j)/3] }, "is shorter"},
		{"deleted", nil, "is gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := nstest.Snapshot(t)
			if r := nsrun(t, recipe); r.code != 0 {
				t.Fatalf("%+v", r)
			}
			j, err := os.ReadFile(journal)
			if err != nil {
				t.Fatal(err)
			}
			if tc.damage == nil {
				os.Remove(journal)
			} else {
				os.WriteFile(journal, tc.damage(j), 0o644)
			}
			r := nsrun(t, "down", "dj")
			if r.code != 3 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("down: %+v", r)
			}
			if after := nstest.Snapshot(t); after != before {
				t.Errorf("left\n%s\nwant\n%s\ndown: %+v", after, before, r)
			}
			if r := nsrun(t, "down", "dj"); r.code != 2 {
				t.Errorf("second down: %+v", r)
			}
		})
	}
	t.Run("record deleted", func(t *testing.T) {
		before := nstest.Snapshot(t)
		if r := nsrun(t, recipe); r.code != 0 {
			t.Fatalf("%+v", r)
		}
		os.Remove(filepath.Join(nstest.StateDir, "dj", "lab.json"))
		nsrun(t, "ls")
		if _, err := os.Stat(journal); err != nil {
			t.Fatalf("ls removed the lab's journal: %v", err)
		}
		r := nsrun(t, "gc")
		for _, want := range []string{`netns "dj"`, `netns "dj2"`, `link "dj0"`, `link "djbr"`, "lab.json) is gone"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("gc does not list %s: %+v", want, r)
			}
		}
		if r := nsrun(t, "gc", "--yes"); r.code != 0 {
			t.Errorf("gc --yes: %+v", r)
		}
		if after := nstest.Snapshot(t); after != before {
			t.Errorf("left\n%s\nwant\n%s", after, before)
		}
	})
}
