package builtins_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/dhcp"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// qdhcp serves vm over a veth, as Neutron's DHCP agent serves a network.
const dhcpTopology = `
q = netns("qdhcp"); vm = netns("vm")
tap, eth0 = veth("tap0", "eth0", netns=q, peer_netns=vm)
tap.addr("10.0.0.2/24").up()
eth0.up()
`

func TestDHCPValidation(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"range type", `dhcp_server(q, tap, range="10.0.0.1")`, `dhcp_server: for parameter "range": got string, want a pair of addresses (first, last)`},
		{"range v6", `dhcp_server(q, tap, range=("fd00::1", "fd00::9"))`, `"fd00::1" is not an IPv4 address`},
		{"range order", `dhcp_server(q, tap, range=("10.0.0.9", "10.0.0.1"))`, `ends before it starts`},
		{"router", `dhcp_server(q, tap, range=("10.0.0.100", "10.0.0.200"), router="fd00::1")`, `dhcp_server: for parameter router: fd00::1 is not an IPv4 address`},
		{"dns", `dhcp_server(q, tap, range=("10.0.0.100", "10.0.0.200"), dns=["x"])`, `dhcp_server: for parameter "dns": "x" is not an IPv4 address`},
		{"lease", `dhcp_server(q, tap, range=("10.0.0.100", "10.0.0.200"), lease="1500ms")`, `dhcp_server: for parameter lease: 1.5s is not a whole number of seconds`},
		{"subnet", `dhcp_server(q, tap, range=("10.0.0.100", "10.0.0.200"), subnet="10.1.0.0/16")`, `dhcp_server: the range 10.0.0.100-10.0.0.200 is not inside subnet 10.1.0.0/16`},
		{"link elsewhere", `dhcp_server(vm, tap, range=("10.0.0.100", "10.0.0.200"))`, `dhcp_server: link "tap0" is in netns "qdhcp", not "vm"`},
		{"client foreign", `dhcp_client(host().link("lo"))`, `dhcp_client: link "lo" in netns "host" was not created by this lab`},
		{"client timeout", `dhcp_client(eth0, timeout="0s")`, `is not a positive duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := kernel.NewRecorder()
			_, rt, err := runSrc(t, rec, "v.star", dhcpTopology+tt.src)
			defer rollback(t, rt)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if bt := engine.Backtrace(err); !strings.Contains(bt, tt.want) {
				t.Errorf("error:\n%s\nwant it to contain %q", bt, tt.want)
			}
		})
	}
}

// Planning starts nothing and waits for nothing; the plan shows the server's
// command and the client's dhclient, and the server the plan started
// answers the client as the real one will: the lease's address and route
// are in the plan.
func TestDHCPPlan(t *testing.T) {
	rec := kernel.NewRecorder()
	out, rt, err := runSrc(t, rec, "p.star", dhcpTopology+`
p = dhcp_server(q, tap, range=("10.0.0.100", "10.0.0.200"), router="10.0.0.1", dns=["10.0.0.2"])
l = dhcp_client(eth0)
print(l.addr, l.router, l.planned)
`)
	defer rollback(t, rt)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	plan := strings.Join(rec.Log, "\n")
	for _, want := range []string{
		"# ip netns exec qdhcp nsrun-internal:dhcp-server -link tap0 -range 10.0.0.100-10.0.0.200 -lease 1h0m0s -router 10.0.0.1 -dns 10.0.0.2",
		"# ip netns exec vm dhclient -1 eth0",
		"ip -n vm addr add 10.0.0.100/24 dev eth0 brd +",
		"ip -n vm route add default via 10.0.0.1 dev eth0 proto dhcp",
		"# ip netns exec vm nsrun-internal:dhcp-client -link eth0",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan lacks %q:\n%s", want, plan)
		}
	}
	if out != "10.0.0.100/24 10.0.0.1 True\n" {
		t.Errorf("printed %q", out)
	}
}

// The walkthrough's dhclient: the vm gets the first address of the range,
// the router as its default route, and all of it, the server included, goes
// at rollback (nstest checks no process or namespace is left).
func TestDHCPLease(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	out, rt, err := runSrc(t, k, "d.star", dhcpTopology+`
dhcp_server(q, tap, range=("10.0.0.100", "10.0.0.200"), router="10.0.0.1", dns=["10.0.0.2"], lease="10m")
l = dhcp_client(eth0)
print(l.addr, l.router, l.dns, l.lease_s, l.server, l.planned)
`)
	defer rollback(t, rt)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	if want := `10.0.0.100/24 10.0.0.1 ["10.0.0.2"] 600 10.0.0.2 False` + "\n"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
	if got := nstest.Ip(t, "vm", "-br", "addr", "show", "eth0"); !strings.Contains(got, "10.0.0.100/24") {
		t.Errorf("eth0 in vm: %s", got)
	}
	if got := nstest.Ip(t, "vm", "route"); !strings.Contains(got, "default via 10.0.0.1 dev eth0") {
		t.Errorf("routes in vm: %s", got)
	}
	var procs int
	for _, s := range rt.Journal.Steps() {
		if s.Op == journal.OpProc {
			procs++
		}
	}
	if procs != 2 {
		t.Errorf("%d processes journaled, want the server and the lease's keeper", procs)
	}
}

// The lease's keeper gives the address the lease's lifetime and renews it
// at T1: the address never outlives its lease.
func TestDHCPRenewal(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	_, rt, err := runSrc(t, k, "d.star", dhcpTopology+`
dhcp_server(q, tap, range=("10.0.0.100", "10.0.0.200"), lease="4s")
dhcp_client(eth0, default_route = False)
`)
	defer rollback(t, rt)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	var held []dhcp.Held
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		held = dhcp.ReadHeld(filepath.Join(rt.Dir, "dhcp"))
		if len(held) == 1 && held[0].Renewals >= 1 {
			break
		}
	}
	if len(held) != 1 || held[0].Renewals < 1 || held[0].Addr != "10.0.0.100/24" || held[0].LeaseS != 4 {
		t.Fatalf("held: %+v", held)
	}
	var addrs []struct {
		AddrInfo []struct {
			Local string `json:"local"`
			Valid any    `json:"valid_life_time"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(nstest.Ip(t, "vm", "-j", "-4", "addr", "show", "eth0")), &addrs); err != nil || len(addrs) != 1 || len(addrs[0].AddrInfo) != 1 {
		t.Fatalf("addresses: %v %+v", err, addrs)
	}
	if v, ok := addrs[0].AddrInfo[0].Valid.(float64); !ok || v > 4 {
		t.Errorf("valid_life_time %v, want at most the lease's 4s", addrs[0].AddrInfo[0].Valid)
	}
}
