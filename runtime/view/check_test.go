package view

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/store"
)

// Check and Inspect read any kernel.View: on a recording kernel, a lab's
// journal is compared with the model, and drift is named.
func TestCheckAndInspectOnRecorder(t *testing.T) {
	lab, j, err := store.Create(t.TempDir(), store.Info{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Remove()
	rec := kernel.NewRecorder()
	rt := engine.New("t", rec, j)
	tag := rt.Tag()
	p := netip.MustParsePrefix("10.0.0.1/24")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rt.Change(nil, journal.Step{Op: journal.OpNetns, Name: "a", Alias: tag}, func(k kernel.Kernel, s *journal.Step) error {
		id, err := k.NetnsAdd(kernel.NetnsSpec{Name: "a", Tag: tag})
		s.Ino = id.Ino
		return err
	}))
	must(rt.Change(nil, journal.Step{Op: journal.OpLink, Kind: "veth", NS: "a", Name: "v0", PeerNS: "a", PeerName: "v1", Alias: tag}, func(k kernel.Kernel, _ *journal.Step) error {
		return k.LinkAdd(kernel.LinkSpec{Kind: "veth", NS: "a", Name: "v0", PeerNS: "a", PeerName: "v1", Alias: tag})
	}))
	must(rt.Change(nil, journal.Step{Op: journal.OpAddr, NS: "a", Name: "v0", Addr: p}, func(k kernel.Kernel, _ *journal.Step) error { return k.AddrAdd("a", "v0", p) }))
	must(j.Flush())

	drift, n, err := Check(lab, rec)
	if err != nil || len(drift) != 0 || n != (CheckCounts{Netns: 1, Links: 2, Addrs: 1}) {
		t.Fatalf("Check = %v, %+v, %v", drift, n, err)
	}
	v, err := Inspect(lab, rec)
	if err != nil || len(v.Namespaces) != 1 || v.Namespaces[0].Name != "a" || len(v.Namespaces[0].Links) != 3 {
		t.Errorf("Inspect = %+v, %v", v, err)
	}

	must(rec.AddrDel("a", "v0", p))
	drift, _, _ = Check(lab, rec)
	if len(drift) != 1 || !strings.Contains(drift[0].Object, "address 10.0.0.1/24") || drift[0].Problem != "missing" {
		t.Errorf("after the address's removal: %v", drift)
	}
	must(rec.LinkSetAlias("a", "v1", "someone"))
	drift, _, _ = Check(lab, rec)
	if len(drift) != 2 || drift[0].Problem != `carries tag "someone", not "nsrun:t" (not the lab's)` {
		t.Errorf("after v1's retagging: %v", drift)
	}
}
