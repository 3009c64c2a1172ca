package builtins_test

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/builtins"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/nstest"
)

func TestNATValidation(t *testing.T) {
	const r = `r = netns("r"); o = netns("o"); a, b = veth("a", "b", netns=r, peer_netns=o); `
	tests := []struct{ name, src, want string }{
		{"cidr", r + `nat.masquerade(r, out=a, src="10.0.0/24")`, `nat.masquerade: for parameter "src": "10.0.0/24" is not a valid CIDR`},
		{"host bits", r + `nat.masquerade(r, out=a, src="10.0.0.1/24")`, `nat.masquerade: for parameter "src": "10.0.0.1/24" has host bits set (did you mean 10.0.0.0/24?)`},
		{"to", r + `nat.snat(r, src="10.0.0.0/24", to="10.0.0")`, `nat.snat: for parameter "to": "10.0.0" is not an IP address`},
		{"to missing", r + `nat.snat(r, src="10.0.0.0/24", to=None)`, `nat.snat: for parameter to: an address is required`},
		{"family", r + `nat.snat(r, src="10.0.0.0/24", to="fd00::1")`, `nat.snat: src and to are of different address families`},
		{"dnat family", r + `nat.dnat(r, dst="fd00::1", to="10.0.0.1")`, `nat.dnat: dst and to are of different address families`},
		{"link elsewhere", r + `nat.masquerade(r, out=b)`, `nat.masquerade: for parameter out: link "b" is in netns "o", not "r"`},
		{"no such link", r + `nat.dnat(r, dst="10.0.0.1", to="10.0.1.1", in_="eth7")`, `nat.dnat: for parameter in_: no link "eth7" in netns "r"`},
		{"link type", r + `nat.masquerade(r, out=1)`, `nat.masquerade: for parameter out: got int, want link or string`},
		{"host", `nat.masquerade(host(), out="lo")`, `nat.masquerade: NAT in host() would change the machine's own firewall`},
		{"floating same", r + `nat.floating(r, floating="10.0.0.1", fixed="10.0.0.1")`, `nat.floating: floating and fixed are both 10.0.0.1`},
		{"unknown", `nat.masq()`, `module has no .masq field or method`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := kernel.NewRecorder()
			_, rt, err := runSrc(t, rec, "v.star", tt.src)
			defer rollback(t, rt)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if bt := engine.Backtrace(err); !strings.Contains(bt, tt.want) {
				t.Errorf("error:\n%s\nwant it to contain %q", bt, tt.want)
			}
			for _, l := range rec.Log {
				if strings.Contains(l, "nft") {
					t.Errorf("a change was made before the arguments were checked: %s", l)
				}
			}
		})
	}
}

// The plan shows the nft commands, the table once per namespace and family;
// the rollback of a run that keeps its namespaces deletes the rules and then
// the table.
func TestNATPlan(t *testing.T) {
	rec := kernel.NewRecorder()
	_, rt, err := runSrc(t, rec, "p.star", `
r = netns("r")
a, b = veth("a", "b", netns=r)
nat.masquerade(r, out=a, src="10.0.0.0/24")
nat.floating(r, floating="203.0.113.9", fixed="10.0.0.2")
nat.snat(r, src="fd00::/64", to="fd01::1", out="b")
`)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	plan := strings.Join(rec.Log, "\n")
	for _, want := range []string{
		`ip netns exec r nft create table ip nsrun-t; ip netns exec r nft add chain ip nsrun-t prerouting '{ type nat hook prerouting priority dstnat; }'`,
		`add chain ip nsrun-t postrouting '{ type nat hook postrouting priority srcnat; }'`,
		`ip netns exec r nft 'add rule ip nsrun-t postrouting oifname "a" ip saddr 10.0.0.0/24 masquerade comment "nsrun:t #`,
		`ip netns exec r nft 'add rule ip nsrun-t prerouting ip daddr 203.0.113.9/32 dnat to 10.0.0.2 comment`,
		`ip netns exec r nft 'add rule ip nsrun-t output ip daddr 203.0.113.9/32 dnat to 10.0.0.2 comment`,
		`ip netns exec r nft 'add rule ip nsrun-t postrouting ip saddr 10.0.0.2/32 snat to 203.0.113.9 comment`,
		`ip netns exec r nft create table ip6 nsrun-t;`,
		`add rule ip6 nsrun-t postrouting oifname "b" ip6 saddr fd00::/64 snat to fd01::1 comment`,
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan lacks %q:\n%s", want, plan)
		}
	}
	if n := strings.Count(plan, "create table ip nsrun-t"); n != 1 {
		t.Errorf("the ip table was created %d times", n)
	}

	// Undo everything but the namespace: the table goes last, after its rules.
	rec.Log = nil
	mark := slices.IndexFunc(rt.Journal.Steps(), func(s journal.Step) bool { return s.Op == "nftable" })
	if _, failed := rt.Rollback(mark); len(failed) > 0 {
		t.Fatal(failed)
	}
	undo := strings.Join(rec.Log, "\n")
	if !strings.Contains(undo, "delete table ip nsrun-t") || !strings.Contains(undo, "delete table ip6 nsrun-t") {
		t.Errorf("the rollback does not delete the tables:\n%s", undo)
	}
	if strings.Index(undo, "delete rule ip nsrun-t") > strings.Index(undo, "delete table ip nsrun-t") {
		t.Errorf("a rule was deleted after its table:\n%s", undo)
	}
	rollback(t, rt)
}

// session runs recipe inputs one after another on one thread, as the REPL
// does: each sees the globals of the ones before.
type session struct {
	t       *testing.T
	rt      *engine.Runtime
	thread  *starlark.Thread
	globals starlark.StringDict
}

func newSession(t *testing.T, k kernel.Kernel) *session {
	j, _ := journal.Open("")
	rt := engine.New("t", k, j)
	in := &engine.Interp{Predeclared: builtins.Predeclared(nil)}
	var out bytes.Buffer
	s := &session{t: t, rt: rt, thread: in.NewThread("s", rt, &out), globals: starlark.StringDict{}}
	for k, v := range in.Predeclared {
		s.globals[k] = v
	}
	return s
}

func (s *session) exec(src string) {
	s.t.Helper()
	g, err := starlark.ExecFileOptions(engine.FileOptions, s.thread, "input.star", src, s.globals)
	if err != nil {
		s.t.Fatal(engine.Backtrace(err))
	}
	for k, v := range g {
		s.globals[k] = v
	}
}

// natTopology is a vm behind a router with an uplink to ext; ext has no
// route back to the vm's network, so only NAT lets a reply through.
const natTopology = `
vm = netns("vm"); r = netns("router"); ext = netns("ext")
vin, vm0 = veth("r-in", "vm0", netns=r, peer_netns=vm)
up, ext0 = veth("r-out", "ext0", netns=r, peer_netns=ext)
vin.addr("10.0.0.1/24").up(); vm0.addr("10.0.0.2/24").up()
up.addr("203.0.113.1/24", "203.0.113.7/24", "203.0.113.9/24").up()
ext0.addr("203.0.113.2/24").up()
vm.route("default", via="10.0.0.1")
r.sysctl("net.ipv4.ip_forward", "1")
`

// seenFrom connects from netns `from` to addr, which a listener in netns
// `to` serves, and returns the source address the listener saw.
func seenFrom(t *testing.T, from, to, listen, dial string) string {
	t.Helper()
	var ln net.Listener
	if err := nsexec.Do(filepath.Join(nstest.NetnsDir, to), func() (err error) {
		ln, err = net.Listen("tcp4", listen)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var c net.Conn
	// A bound on a failure, not a measured time: without NAT the SYN-ACK
	// never comes back.
	d := net.Dialer{Timeout: 10 * time.Second}
	if err := nsexec.Do(filepath.Join(nstest.NetnsDir, from), func() (err error) {
		c, err = d.Dial("tcp4", dial)
		return err
	}); err != nil {
		t.Fatalf("connecting from netns %q to %s: %v", from, dial, err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	host, _, _ := net.SplitHostPort(a.RemoteAddr().String())
	return host
}

// Each kind of NAT, proven with a TCP connection across the router, seen
// from the receiver.
func TestNATTraffic(t *testing.T) {
	tests := []struct {
		name, nat            string
		from, to             string
		listen, dial, source string
	}{
		{"masquerade", `nat.masquerade(r, out=up, src="10.0.0.0/24")`, "vm", "ext", "203.0.113.2:9000", "203.0.113.2:9000", "203.0.113.1"},
		{"snat", `nat.snat(r, src="10.0.0.0/24", to="203.0.113.7", out=up)`, "vm", "ext", "203.0.113.2:9000", "203.0.113.2:9000", "203.0.113.7"},
		{"floating out", `nat.floating(r, floating="203.0.113.9", fixed="10.0.0.2")`, "vm", "ext", "203.0.113.2:9000", "203.0.113.2:9000", "203.0.113.9"},
		{"floating in", `nat.floating(r, floating="203.0.113.9", fixed="10.0.0.2")`, "ext", "vm", "10.0.0.2:9000", "203.0.113.9:9000", "203.0.113.2"},
		// The output chain: without it the router would connect to itself,
		// 203.0.113.9 being its own address.
		{"floating from router", `nat.floating(r, floating="203.0.113.9", fixed="10.0.0.2")`, "router", "vm", "10.0.0.2:9000", "203.0.113.9:9000", "203.0.113.1"},
		{"dnat in_", `nat.dnat(r, dst="203.0.113.9", to="10.0.0.2", in_=up)`, "ext", "vm", "10.0.0.2:9000", "203.0.113.9:9000", "203.0.113.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nstest.Kernel(t)
			k := kernel.NewNetlink(nstest.NetnsDir)
			defer k.Close()
			s := newSession(t, k)
			defer rollback(t, s.rt)
			s.exec(natTopology)
			s.exec(tt.nat)
			if got := seenFrom(t, tt.from, tt.to, tt.listen, tt.dial); got != tt.source {
				t.Errorf("the listener in %s saw the connection come from %s, want %s", tt.to, got, tt.source)
			}
		})
	}
}

// tables lists the nftables tables of a namespace as "family name".
func tables(t *testing.T, ns string) []string {
	t.Helper()
	c := nftConn(t, ns)
	ts, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range ts {
		fam := map[nftables.TableFamily]string{nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6", nftables.TableFamilyINet: "inet"}[tb.Family]
		names = append(names, fam+" "+tb.Name)
	}
	slices.Sort(names)
	return names
}

// rules counts the rules of the lab's ip table, by chain.
func rules(t *testing.T, ns string) map[string]int {
	t.Helper()
	c := nftConn(t, ns)
	tb := &nftables.Table{Name: "nsrun-t", Family: nftables.TableFamilyIPv4}
	n := map[string]int{}
	for _, ch := range []string{"prerouting", "output", "postrouting"} {
		rs, err := c.GetRules(tb, &nftables.Chain{Name: ch, Table: tb})
		if err != nil {
			t.Fatal(err)
		}
		n[ch] = len(rs)
	}
	return n
}

// nftCLI lists the tables of ns with the nft binary, the independent view,
// when it is installed.
func nftCLI(t *testing.T, ns string) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		return "", false
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	return string(out), true
}

// Rolling back one input, as the REPL does, removes exactly what it added:
// its rules, and the table only if it made it. Tables that are not the lab's
// — even one named like another lab's — survive.
func TestNATPartialRollback(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	s := newSession(t, k)
	defer rollback(t, s.rt)
	s.exec(natTopology)

	// Decoys, made behind nsrun's back in the router namespace.
	c := nftConn(t, "router")
	for _, d := range []*nftables.Table{
		{Name: "decoy", Family: nftables.TableFamilyIPv4},
		{Name: "nsrun-other", Family: nftables.TableFamilyIPv4},
		{Name: "nsrun-t", Family: nftables.TableFamilyINet}, // same name, another family
	} {
		c.AddTable(d)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	decoys := []string{"inet nsrun-t", "ip decoy", "ip nsrun-other"}

	mark1 := s.rt.Journal.Len()
	s.exec(`nat.masquerade(r, out=up, src="10.0.0.0/24")`)
	mark2 := s.rt.Journal.Len()
	s.exec(`nat.floating(r, floating="203.0.113.9", fixed="10.0.0.2")`)
	if got, want := tables(t, "router"), append(slices.Clone(decoys), "ip nsrun-t"); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("tables = %v, want %v", got, want)
	}
	if got := rules(t, "router"); got["prerouting"] != 1 || got["output"] != 1 || got["postrouting"] != 2 {
		t.Errorf("rules by chain = %v, want prerouting 1, output 1, postrouting 2", got)
	}
	if out, ok := nftCLI(t, "router"); ok && !strings.Contains(out, "table ip nsrun-t") {
		t.Errorf("nft list tables in router:\n%s", out)
	}

	// The floating IP's input: its rules go, the table and the masquerade stay.
	if _, failed := s.rt.Rollback(mark2); len(failed) > 0 {
		t.Fatal(failed)
	}
	if got := rules(t, "router"); got["prerouting"] != 0 || got["output"] != 0 || got["postrouting"] != 1 {
		t.Errorf("after undoing the floating IP, rules by chain = %v, want only the masquerade", got)
	}
	if got := seenFrom(t, "vm", "ext", "203.0.113.2:9000", "203.0.113.2:9000"); got != "203.0.113.1" {
		t.Errorf("the masquerade no longer works: ext saw %s", got)
	}

	// The masquerade's input made the table: it goes, the decoys stay.
	if _, failed := s.rt.Rollback(mark1); len(failed) > 0 {
		t.Fatal(failed)
	}
	if got := tables(t, "router"); !slices.Equal(got, decoys) {
		t.Errorf("after undoing the table, tables = %v, want the decoys %v", got, decoys)
	}
	if out, ok := nftCLI(t, "router"); ok && (strings.Contains(out, "table ip nsrun-t") || !strings.Contains(out, "table ip decoy")) {
		t.Errorf("nft list tables in router:\n%s", out)
	}

	// Undo is idempotent: the table already gone is success.
	nk := kernel.NAT(k)
	if err := nk.NATDelTable("router", "ip", "nsrun-t"); err != nil {
		t.Errorf("deleting a table already gone: %v", err)
	}
	if err := nk.NATRuleDel("router", "ip", "nsrun-t", "nsrun:t #1"); err != nil {
		t.Errorf("deleting a rule whose table is gone: %v", err)
	}
	if err := nk.NATDelTable("gone", "ip", "nsrun-t"); err != nil {
		t.Errorf("deleting a table in a namespace already gone: %v", err)
	}
}

// A failed run rolls back whole: the namespaces go, and with them the
// tables, without a step of their own (moot).
func TestNATRollbackAtEveryChange(t *testing.T) {
	src := `r = netns("r"); a, b = veth("a", "b", netns=r)
nat.masquerade(r, out=a, src="10.0.0.0/24")
nat.floating(r, floating="203.0.113.9", fixed="10.0.0.2")
`
	for n := 1; ; n++ {
		_, rt, err := runFaulty(t, kernel.NewRecorder(), fault.FailAt(n), "f.star", src, false)
		if err == nil {
			if n < 4 {
				t.Fatalf("the recipe made only %d changes", n-1)
			}
			rollback(t, rt)
			return
		}
		if _, failed := rt.Rollback(0); len(failed) > 0 {
			t.Fatalf("fail at %d: %v", n, failed)
		}
		if rt.Journal.Len() != 0 {
			t.Fatalf("fail at %d: %d steps left", n, rt.Journal.Len())
		}
	}
}

// nftConn is an nftables connection in the lab's namespace ns, closed at
// the end of the test.
func nftConn(t *testing.T, ns string) *nftables.Conn {
	t.Helper()
	f, err := os.Open(filepath.Join(nstest.NetnsDir, ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Port publishing: a DNAT of one port to another reaches a listener on the
// new port of the target (tcp_connect to the published port succeeds), and
// no other port is forwarded; nft shows the rule as it would write it.
func TestDNATByPort(t *testing.T) {
	out, _ := onKernel(t, "publish.star", `
c = netns("pp-c"); r = netns("pp-r"); s = netns("pp-s")
c1, r1 = veth("c1", "r1", netns=c, peer_netns=r)
r2, s1 = veth("r2", "s1", netns=r, peer_netns=s)
c1.addr("10.2.0.2/24").up(); r1.addr("10.2.0.1/24").up()
r2.addr("10.2.1.1/24").up(); s1.addr("10.2.1.2/24").up()
r.sysctl("net.ipv4.ip_forward", "1")
s.route("default", via="10.2.1.1")
spawn_in(s, ["python3", "-c", "import socket,time\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen(8)\nwhile True: s.accept()[0].close()"], name="web", ready="tcp:80")
nat.dnat(r, dst="10.2.0.1", to="10.2.1.2", port=5000, to_port=80, in_=r1)
for port in [5000, 5001, 80]:
    res = tcp_connect(c, "10.2.0.1", port)
    print(port, res.ok, res.error)
`)
	for _, want := range []string{"5000 True \n", "5001 False ", "80 False "} {
		if !strings.Contains(out, want) {
			t.Errorf("tcp_connect through the published port: got\n%s\nwant a line %q", out, want)
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		rules, err := exec.Command("ip", "netns", "exec", "pp-r", "nft", "list", "table", "ip", "nsrun-t").CombinedOutput()
		if err != nil || !strings.Contains(string(rules), `iifname "r1" ip daddr 10.2.0.1 tcp dport 5000 dnat to 10.2.1.2:80`) {
			t.Errorf("nft list table ip nsrun-t: %v\n%s", err, rules)
		}
	}
}
