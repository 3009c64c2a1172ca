package kernel

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// The real kernel's NAT is tested through the builtins, with traffic, in
// builtins/nat_test.go; this package has no sandbox of its own.

func TestNATRuleString(t *testing.T) {
	tests := []struct {
		r    NATRule
		want string
	}{
		{NATRule{Action: Masquerade, Out: "eth0", Src: netip.MustParsePrefix("10.0.0.0/24"), Comment: "c"},
			`oifname "eth0" ip saddr 10.0.0.0/24 masquerade comment "c"`},
		{NATRule{Action: DNAT, In: "up", Dst: netip.MustParsePrefix("203.0.113.9/32"), To: netip.MustParseAddr("10.0.0.2")},
			`iifname "up" ip daddr 203.0.113.9/32 dnat to 10.0.0.2`},
		{NATRule{Action: SNAT, Src: netip.MustParsePrefix("fd00::/64"), To: netip.MustParseAddr("fd01::1")},
			`ip6 saddr fd00::/64 snat to fd01::1`},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestNATExprs(t *testing.T) {
	r := NATRule{Action: SNAT, Src: netip.MustParsePrefix("10.1.0.0/20"), To: netip.MustParseAddr("192.0.2.1")}
	e, err := natExprs(nftables.TableFamilyIPv4, r)
	if err != nil {
		t.Fatal(err)
	}
	bw, ok := e[1].(*expr.Bitwise)
	if !ok || string(bw.Mask) != "\xff\xff\xf0\x00" {
		t.Errorf("the /20 mask is %+v", e[1])
	}
	if cmp := e[2].(*expr.Cmp); netip.AddrFrom4([4]byte(cmp.Data)) != netip.MustParseAddr("10.1.0.0") {
		t.Errorf("compared with %v", cmp.Data)
	}
	if _, err := natExprs(nftables.TableFamilyIPv6, r); err == nil {
		t.Error("an IPv4 rule compiled for an ip6 table")
	}
	if _, err := natExprs(nftables.TableFamilyIPv4, NATRule{Action: DNAT}); err == nil {
		t.Error("a dnat without a target compiled")
	}
}

// The recorder keeps a model: a second table is refused as the kernel would,
// a rule needs its table, and deletions of what is gone are no-ops.
func TestRecorderNAT(t *testing.T) {
	r := NewRecorder()
	id, _ := r.NetnsAdd(NetnsSpec{Name: "r", Tag: "nsrun:t"})
	if err := r.NATRule("r", "ip", "nsrun-t", NATRule{Action: Masquerade}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a rule without its table: %v", err)
	}
	if err := r.NATTable("r", "ip", "nsrun-t"); err != nil {
		t.Fatal(err)
	}
	if err := r.NATTable("r", "ip", "nsrun-t"); !errors.Is(err, os.ErrExist) {
		t.Errorf("a second table: %v", err)
	}
	if err := r.NATTable("r", "ip6", "nsrun-t"); err != nil {
		t.Errorf("the ip6 table beside the ip one: %v", err)
	}
	if err := r.NATRule("r", "ip", "nsrun-t", NATRule{Action: Masquerade, Comment: "c1"}); err != nil {
		t.Fatal(err)
	}
	n := len(r.Log)
	if err := r.NATRuleDel("r", "ip", "nsrun-t", "other"); err != nil || len(r.Log) != n {
		t.Errorf("deleting a rule that is not there: %v, log %v", err, r.Log[n:])
	}
	if err := r.NATRuleDel("r", "ip", "nsrun-t", "c1"); err != nil || !strings.Contains(r.Log[len(r.Log)-1], `awk -v m='comment "c1" # handle '`) {
		t.Errorf("deleting the rule: %v, log %v", err, r.Log[n:])
	}
	if err := r.NATDelTable("r", "ip", "nsrun-t"); err != nil {
		t.Fatal(err)
	}
	n = len(r.Log)
	if err := r.NATDelTable("r", "ip", "nsrun-t"); err != nil || len(r.Log) != n {
		t.Errorf("deleting a table already gone: %v", err)
	}
	// A namespace made again under the same name starts without tables.
	r.NetnsDel("r", "nsrun:t", id)
	r.NetnsAdd(NetnsSpec{Name: "r", Tag: "nsrun:t"})
	if err := r.NATTable("r", "ip6", "nsrun-t"); err != nil {
		t.Errorf("the table in a new namespace of the same name: %v", err)
	}
}
