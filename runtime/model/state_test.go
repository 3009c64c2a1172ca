package model

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/journal"
)

// describe renders a state for comparison: namespaces, then each link made
// where it is now, with what the model knows of it.
func describe(st *State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "netns %s\n", strings.Join(st.NetnsNames(), " "))
	for _, l := range st.InOrder() {
		fmt.Fprintf(&b, "%s %s/%s", l.Kind, l.At.NS, l.At.Name)
		if l.Peer != nil {
			fmt.Fprintf(&b, " peer %s/%s", l.Peer.At.NS, l.Peer.At.Name)
		}
		if l.Parent != "" {
			fmt.Fprintf(&b, " on %s/%s %s", l.ParentNS, l.Parent, l.Mode)
		}
		if l.Master != "" {
			fmt.Fprintf(&b, " master %s", l.Master)
		}
		if l.Untagged {
			fmt.Fprintf(&b, " untagged %s", l.MAC)
		}
		for _, a := range l.Addrs {
			fmt.Fprintf(&b, " %s", a)
		}
		if l.Moved >= 0 {
			fmt.Fprintf(&b, " moved@%d", l.Moved)
		}
		for _, k := range l.Maybe {
			fmt.Fprintf(&b, " maybe %s/%s", k.NS, k.Name)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// The model of a lab, replayed from recorded journals (as a run writes
// them: intents, bare done records, voids, a torn last line).
func TestLabStateFromJournals(t *testing.T) {
	for _, tc := range []struct {
		name, journal string
		intents       bool
		want          string
	}{
		{"moves", `{"seq":1,"state":"intent","pos":"a:1:1","op":"netns","name":"a","alias":"nsrun:t"}
{"seq":1}
{"seq":2,"state":"intent","pos":"a:2:1","op":"link","name":"v0","kind":"veth","alias":"nsrun:t","peer_ns":"a","peer":"v1","peer_mac":"02:00:00:00:00:01"}
{"seq":2}
{"seq":3,"state":"intent","pos":"a:3:1","op":"addr","name":"v0","addr":"10.0.0.1/24"}
{"seq":3}
{"seq":4,"state":"intent","pos":"a:4:1","op":"move","name":"v0","new":"a"}
{"seq":4}
{"seq":5,"state":"intent","pos":"a:5:1","op":"addr","ns":"a","name":"v0","addr":"10.0.0.2/24"}
{"seq":5}
`, false, "netns a\nveth a/v1 peer a/v0 untagged 02:00:00:00:00:01\nveth a/v0 peer a/v1 10.0.0.2/24 moved@3\n"},
		{"stacked links follow their parent", `{"seq":1,"pos":"a:1:1","op":"netns","name":"a","alias":"nsrun:t"}
{"seq":2,"pos":"a:2:1","op":"link","name":"p0","kind":"veth","alias":"nsrun:t","peer":"p1"}
{"seq":3,"pos":"a:3:1","op":"link","name":"mv","kind":"macvlan","alias":"nsrun:t","parent":"p0","mode":"bridge"}
{"seq":4,"pos":"a:4:1","op":"link","name":"br","kind":"bridge","alias":"nsrun:t"}
{"seq":5,"pos":"a:5:1","op":"master","name":"p1","new":"br"}
{"seq":6,"pos":"a:6:1","op":"move","name":"p0","new":"a"}
`, false, "netns a\nveth /p1 peer a/p0 master br\nmacvlan /mv on a/p0 bridge\nbridge /br\nveth a/p0 peer /p1 moved@5\n"},
		{"voided and never begun", `{"seq":1,"state":"intent","pos":"a:1:1","op":"netns","name":"a","alias":"nsrun:t"}
{"seq":1}
{"seq":2,"state":"intent","pos":"a:2:1","op":"link","name":"b0","kind":"bridge","alias":"nsrun:t"}
{"seq":2,"state":"void"}
{"seq":3,"state":"intent","pos":"a:3:1","op":"netns","name":"b","alias":"nsrun:t"}
{"seq":4,"state":"intent","pos":"a:4:1","op":"netns","name":"c","alias":"nsrun:t"}
`, true, "netns a b\n"},
		{"intents left out", `{"seq":1,"pos":"a:1:1","op":"netns","name":"a","alias":"nsrun:t"}
{"seq":2,"state":"intent","pos":"a:2:1","op":"link","name":"b0","kind":"bridge","alias":"nsrun:t"}
`, false, "netns a\n"},
		{"an unconfirmed move", `{"seq":1,"pos":"a:1:1","op":"netns","name":"a","alias":"nsrun:t"}
{"seq":2,"pos":"a:2:1","op":"link","name":"m0","kind":"veth","alias":"nsrun:t","ns":"a","peer_ns":"a","peer":"m1","peer_mac":"02:00:00:00:00:02"}
{"seq":3,"state":"intent","pos":"a:3:1","op":"move","ns":"a","name":"m1","new":""}
`, true, "netns a\nveth a/m0 peer a/m1\nveth a/m1 peer a/m0 untagged 02:00:00:00:00:02 maybe /m1\n"},
		{"a torn last record", `{"seq":1,"pos":"a:1:1","op":"netns","name":"a","alias":"nsrun:t"}
{"seq":2,"pos":"a:2:1","op":"link","name":"b0","kind":"bri`, true, "netns a\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal")
			os.WriteFile(path, []byte(tc.journal), 0o644)
			steps, err := journal.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(Replay(steps, tc.intents)); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// The run's ownership follows the same model: what it made, where it is
// now; a link forgotten (undone) by where it was made, after a move.
func TestLabStateForget(t *testing.T) {
	st := New(true)
	st.Apply(0, journal.Step{Op: journal.OpNetns, Name: "a"})
	st.Apply(1, journal.Step{Op: journal.OpLink, Kind: "veth", Name: "v0", PeerNS: "a", PeerName: "v1"})
	st.Apply(2, journal.Step{Op: journal.OpMove, Name: "v0", New: "a"})
	if _, ok := st.MadeLink("a", "v0"); !ok {
		t.Fatalf("v0 not in a after its move")
	}
	st.Forget(journal.Step{Op: journal.OpLink, Kind: "veth", Name: "v0", PeerNS: "a", PeerName: "v1"})
	if _, ok := st.MadeLink("a", "v0"); ok || len(st.Links) != 0 {
		t.Errorf("the link is still known: %s", describe(st))
	}
	st.Forget(journal.Step{Op: journal.OpNetns, Name: "a"})
	if st.HasNetns("a") {
		t.Errorf("the namespace is still known")
	}
}

// A link's segment is what its broadcasts may reach: through a veth to its
// other end, through a bridge to its ports, from a macvlan out through its
// parent's wire; a second bridge's ports are not in it. (What the wire side
// reaches, the parent and its macvlans, is in it too: a plan's guess errs
// on reaching.)
func TestSegment(t *testing.T) {
	st := Replay([]journal.Step{
		{Op: journal.OpNetns, Name: "a"},
		{Op: journal.OpLink, Kind: "bridge", NS: "sw", Name: "br0"},
		{Op: journal.OpLink, Kind: "veth", NS: "sw", Name: "p1", PeerNS: "a", PeerName: "eth0"},
		{Op: journal.OpMaster, NS: "sw", Name: "p1", New: "br0"},
		{Op: journal.OpLink, Kind: "veth", NS: "sw", Name: "p2", PeerNS: "b", PeerName: "eth0"},
		{Op: journal.OpMaster, NS: "sw", Name: "p2", New: "br0"},
		{Op: journal.OpLink, Kind: "macvlan", NS: "c", Name: "mv0", ParentNS: "b", Parent: "eth0", Mode: "private"},
		{Op: journal.OpLink, Kind: "macvlan", NS: "c", Name: "mv1", ParentNS: "b", Parent: "eth0", Mode: "private"},
		{Op: journal.OpLink, Kind: "bridge", NS: "sw", Name: "br1"},
		{Op: journal.OpLink, Kind: "veth", NS: "sw", Name: "q1", PeerNS: "d", PeerName: "eth0"},
		{Op: journal.OpMaster, NS: "sw", Name: "q1", New: "br1"},
	}, false)
	got := st.Segment(LinkKey{"c", "mv0"})
	want := []LinkKey{{"c", "mv0"}, {"sw", "p2"}, {"b", "eth0"}, {"sw", "br0"}, {"c", "mv1"}, {"sw", "p1"}, {"a", "eth0"}}
	if !slices.Equal(got, want) {
		t.Errorf("segment of mv0: %v, want %v", got, want)
	}
}
