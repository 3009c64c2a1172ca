package model

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// A link taken down loses what the kernel dropped with it (the step's
// Was: its IPv6 addresses, the routes through it), and up again does not
// get them back: those steps are no longer live, and the model has
// neither. Its IPv4 address stays.
func TestDownDropsWhatTheKernelDrops(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("10.5.0.1/24"), netip.MustParsePrefix("fd05::1/64")
	route := kernel.Route{Dst: netip.MustParsePrefix("10.6.0.0/16"), Family: 4, Via: netip.MustParseAddr("10.5.0.2")}
	steps := []journal.Step{
		{Op: journal.OpNetns, Name: "a"},
		{Op: journal.OpLink, Kind: "veth", NS: "a", Name: "x", PeerNS: "a", PeerName: "y"},
		{Op: journal.OpAddr, NS: "a", Name: "x", Addr: v4},
		{Op: journal.OpAddr, NS: "a", Name: "x", Addr: v6},
		{Op: journal.OpUp, NS: "a", Name: "x", Old: "down", New: "up"},
		{Op: journal.OpRoute, NS: "a", Route: &route},
		{Op: journal.OpUp, NS: "a", Name: "x", Old: "up", New: "down", Was: &journal.LinkWas{Ends: []journal.EndWas{{NS: "a", Name: "x", Addrs: []netip.Prefix{v6}, Routes: []kernel.Route{route}}}}},
		{Op: journal.OpUp, NS: "a", Name: "x", Old: "down", New: "up"},
	}
	live := Live(steps)
	if want := []bool{true, true, true, false, true, false, true, true}; !slices.Equal(live, want) {
		t.Errorf("Live = %v, want %v", live, want)
	}
	st := Replay(steps, true)
	if rs := st.Routes("a"); len(rs) != 0 {
		t.Errorf("routes after the down: %v", rs)
	}
	if l, _ := st.MadeLink("a", "x"); !slices.Equal(l.Addrs, []netip.Prefix{v4}) {
		t.Errorf("addresses after the down: %v", l.Addrs)
	}
}
