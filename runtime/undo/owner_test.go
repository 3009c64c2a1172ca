package undo

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

func init() {
	Register("test-nat", func(k kernel.Kernel, s journal.Step) error {
		return k.SysctlSet(s.NS, "test.nat.deleted", s.Name) // a change the log shows
	})
}

// Every kind of undo, on a step whose object someone else has now (or that
// a forged record names): nothing is changed, and a step recorded as made
// says what it left alone.
func TestUndoSparesStrangers(t *testing.T) {
	const tag = "nsrun:t"
	route := kernel.Route{Dst: netip.MustParsePrefix("10.5.0.0/16"), Family: 4, Dev: "s0"}
	for _, tc := range []struct {
		name string
		step journal.Step
	}{
		{"up of a stranger's host link", journal.Step{Op: journal.OpUp, Name: "s0", Old: "down"}},
		{"mtu of a stranger's host link", journal.Step{Op: journal.OpMTU, Name: "s0", Old: "1500"}},
		{"mac of a stranger's host link", journal.Step{Op: journal.OpMAC, Name: "s0", Old: "02:00:00:00:00:09"}},
		{"hairpin of a stranger's host link", journal.Step{Op: journal.OpHairpin, Name: "s0", Old: "on"}},
		{"address on a stranger's host link", journal.Step{Op: journal.OpAddr, Name: "s0", Addr: netip.MustParsePrefix("10.5.0.1/24")}},
		{"port of a stranger's bridge", journal.Step{Op: journal.OpMaster, Name: "s0", Old: ""}},
		{"back to a stranger's bridge", journal.Step{Op: journal.OpMaster, Name: "l0", Old: "sbr"}},
		{"route through a stranger's link", journal.Step{Op: journal.OpRoute, Route: &route}},
		{"sysctl of a stranger's host link", journal.Step{Op: journal.OpSysctl, Name: "net.ipv4.conf.s0.forwarding", Old: "0", New: "1"}},
		{"sysctl of the machine", journal.Step{Op: journal.OpSysctl, Name: "net.ipv4.ip_forward", Old: "0", New: "1"}},
		{"sysctl changed since", journal.Step{Op: journal.OpSysctl, Name: "net.ipv4.conf.l0.forwarding", Old: "0", New: "1"}},
		{"a namespace now a stranger's", journal.Step{Op: journal.OpNetns, Name: "sns", Alias: tag}},
		{"a namespace recorded untagged", journal.Step{Op: journal.OpNetns, Name: "sns", Alias: ""}},
		{"a link now a stranger's", journal.Step{Op: journal.OpLink, Kind: "veth", Name: "s0", Alias: tag, MAC: "02:00:00:00:00:01"}},
		{"a link recorded with a stranger's tag", journal.Step{Op: journal.OpLink, Kind: "bridge", Name: "sbr", Alias: "someone"}},
		{"a change in a stranger's namespace", journal.Step{Op: journal.OpUp, NS: "sns", Name: "v0", Old: "down"}},
		{"another package's op in a stranger's namespace", journal.Step{Op: "test-nat", NS: "sns", Name: "nsrun-t"}},
		{"another package's op in the host", journal.Step{Op: "test-nat", Name: "nsrun-t"}},
		{"a move back into a stranger's namespace", journal.Step{Op: journal.OpMove, NS: "sns", Name: "l0", New: kernel.Host}},
		{"a file kept outside the lab's directory", journal.Step{Op: journal.OpFile, NS: "sns", Name: "/etc/x", Path: "/etc/nsrun-never-x"}},
		{"a file whose old content is outside", journal.Step{Op: journal.OpFile, NS: "sns", Name: "/etc/x", Path: "/run/nsrun/t/nodes/sns/files/x", Old: "/etc/nsrun-never-y"}},
		{"a private directory of another namespace", journal.Step{Op: journal.OpPrivate, NS: "sns", Name: "/run/x", Path: "/run/nsrun/t/nodes/other/private/x"}},
		{"a private directory recorded with ..", journal.Step{Op: journal.OpPrivate, NS: "sns", Name: "/run/x", Path: "/run/nsrun/t/nodes/sns/private/../../../../../etc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := kernel.NewRecorder()
			// Strangers: a host veth s0 untagged (with the MAC the
			// lab's had), a bridge of someone else's, a namespace
			// whose lo carries no tag; and the lab's own l0, whose
			// forwarding someone set to 2 since.
			rec.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: "s0", PeerName: "s1", MAC: []byte{2, 0, 0, 0, 0, 1}})
			rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: "sbr", Alias: "someone"})
			rec.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: "l0", PeerName: "l1", Alias: tag})
			rec.NetnsAdd(kernel.NetnsSpec{Name: "sns"})
			rec.LinkAdd(kernel.LinkSpec{NS: "sns", Kind: "veth", Name: "v0", PeerName: "v1"})
			rec.SysctlSet(kernel.Host, "net.ipv4.conf.l0.forwarding", "2")
			rec.SysctlSet(kernel.Host, "net.ipv4.ip_forward", "1")
			made := len(rec.Log)
			s := tc.step
			s.Pos = "x.star:1:1"
			r := Steps(rec, tag, []journal.Step{s})
			if got := rec.Log[made:]; len(got) > 0 {
				t.Errorf("changed: %q", got)
			}
			if len(r.Failed) > 0 || len(r.Errs) > 0 {
				t.Errorf("failed: %v", r.Errs)
			}
			if len(r.Spared) != 1 || !strings.Contains(r.Spared[0].Error(), "x.star:1:1") {
				t.Errorf("spared: %v", r.Spared)
			}
		})
	}
}

// With no tag to check by, nothing is undone at all.
func TestUndoWithoutTag(t *testing.T) {
	rec := kernel.NewRecorder()
	rec.LinkAdd(kernel.LinkSpec{Kind: "bridge", Name: "b"})
	made := len(rec.Log)
	r := Steps(rec, "", []journal.Step{{Op: journal.OpLink, Kind: "bridge", Name: "b"}, {Op: journal.OpUp, Name: "x", Old: "down"}})
	if got := rec.Log[made:]; len(got) > 0 || len(r.Spared) != 2 {
		t.Errorf("changed %q, spared %v", got, r.Spared)
	}
}

// The lab's own objects are undone as before: the checks pass for them (an
// address goes with its link).
func TestUndoOwn(t *testing.T) {
	const tag = "nsrun:t"
	rec := kernel.NewRecorder()
	rec.LinkAdd(kernel.LinkSpec{Kind: "veth", Name: "l0", PeerName: "l1", Alias: tag})
	rec.AddrAdd(kernel.Host, "l0", netip.MustParsePrefix("10.6.0.1/24"))
	rec.SysctlSet(kernel.Host, "net.ipv4.conf.l0.forwarding", "1")
	id, _ := rec.NetnsAdd(kernel.NetnsSpec{Name: "n", Tag: tag})
	rec.LinkAdd(kernel.LinkSpec{NS: "n", Kind: "bridge", Name: "br"})
	made := len(rec.Log)
	r := Steps(rec, tag, []journal.Step{
		{Op: journal.OpNetns, Name: "n", Ino: id.Ino, Alias: tag},
		{Op: journal.OpLink, Kind: "veth", Name: "l0", PeerName: "l1", Alias: tag},
		{Op: journal.OpAddr, Name: "l0", Addr: netip.MustParsePrefix("10.6.0.1/24")},
		{Op: journal.OpSysctl, Name: "net.ipv4.conf.l0.forwarding", Old: "0", New: "1"},
	})
	want := []string{"sysctl -qw net.ipv4.conf.l0.forwarding=0", "ip link del l0", "ip netns del n"}
	if got := rec.Log[made:]; strings.Join(got, "\n") != strings.Join(want, "\n") || len(r.Spared)+len(r.Errs) > 0 {
		t.Errorf("made %q, want %q; spared %v, errors %v", got, want, r.Spared, r.Errs)
	}
}
