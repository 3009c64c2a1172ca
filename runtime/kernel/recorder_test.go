package kernel

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// The recorder's commands are iproute2's own syntax: a link's address and
// MTU before its type (after it they are the type's or the peer's), a veth
// with an end in the host made from the host's side (the host namespace
// has no name for `netns`), the host as `$$` where it must be named, and
// a started command's arguments quoted as the shell reads them back.
func TestRecorderCommands(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	r := NewRecorder()
	for _, err := range []error{
		func() error { _, err := r.NetnsAdd(NetnsSpec{Name: "h1", LoUp: true}); return err }(),
		r.LinkAdd(LinkSpec{NS: Host, Name: "br0", Kind: "bridge", MAC: mac("02:00:00:00:00:01"), MTU: 9000}),
		r.LinkAdd(LinkSpec{NS: "h1", Name: "eth0", Kind: "veth", MAC: mac("02:00:00:00:00:02"), PeerNS: Host, PeerName: "s1-eth1", PeerMAC: mac("02:00:00:00:00:03")}),
		r.LinkAdd(LinkSpec{NS: Host, Name: "mv0", Kind: "macvlan", Mode: "bridge", ParentNS: "h1", Parent: "eth0"}),
		r.LinkMove("h1", "eth0", Host),
		r.SysctlSet("h1", "net.ipv4.ip_forward", "1"),
		r.RouteAdd("h1", Route{Family: 4, Via: netip.MustParseAddr("10.0.0.1")}),
		r.Start("h1", exec.Command("helper", "/bin/sh", "-c", "echo 'hi' there")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"ip netns add h1; ip -n h1 link set lo up",
		"ip link add br0 address 02:00:00:00:00:01 mtu 9000 type bridge",
		"ip link add s1-eth1 address 02:00:00:00:00:03 type veth peer name eth0 address 02:00:00:00:00:02 netns h1",
		"ip -n h1 link add mv0 link eth0 netns $$ type macvlan mode bridge",
		"ip -n h1 link set eth0 netns $$",
		"ip netns exec h1 sysctl -qw net.ipv4.ip_forward=1",
		"ip -n h1 route add default via 10.0.0.1 proto 78",
		`# ip netns exec h1 /bin/sh -c 'echo '\''hi'\'' there'`,
	}
	if got := strings.Join(r.Log, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
