package builtins_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// iperf3 measures what a TCP stream from namespace from carries to an
// iperf3 server at addr for a second, in bits per second.
func iperf3(t *testing.T, from, addr string) float64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", from, "iperf3", "-c", addr, "-t", "2", "-O", "1", "-J").Output()
	if err != nil {
		t.Fatalf("iperf3 from %s to %s: %v\n%s", from, addr, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("iperf3's report: %v\n%s", err, out)
	}
	return r.End.SumReceived.BitsPerSecond
}

// A link shaped to 50 Mbit/s carries a TCP stream at that rate (iperf3
// measures within 20% of it), tc shows its token bucket, and shape()
// without arguments gives the link its full speed back; the rollback
// leaves nothing (nstest checks).
func TestShapeRate(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 is not installed")
	}
	s := kernelSession(t)
	s.exec(`
a = netns("sh-a"); b = netns("sh-b")
x, y = veth("x", "y", netns=a, peer_netns=b)
x.addr("10.3.0.1/24").up(); y.addr("10.3.0.2/24").up()
server = spawn_in(b, "iperf3 -s -B 10.3.0.2", ready="tcp:5201")
x.shape(rate="50mbit")
`)
	if q := nstest.Ip(t, "", "-n", "sh-a", "link", "show", "x"); !strings.Contains(q, "qdisc tbf") {
		t.Errorf("ip link show x: %s, want qdisc tbf", q)
	}
	tc, err := exec.Command("tc", "-n", "sh-a", "qdisc", "show", "dev", "x").Output()
	if err != nil || !strings.Contains(string(tc), "rate 50Mbit") {
		t.Errorf("tc qdisc show dev x: %s %v", tc, err)
	}
	got := iperf3(t, "sh-a", "10.3.0.2")
	t.Logf("shaped to 50mbit: %.1f Mbit/s", got/1e6)
	if got < 40e6 || got > 60e6 {
		t.Errorf("iperf3 through a link shaped to 50mbit: %.1f Mbit/s, want 40 to 60", got/1e6)
	}
	s.exec(`x.shape()`)
	got = iperf3(t, "sh-a", "10.3.0.2")
	t.Logf("unshaped: %.1f Mbit/s", got/1e6)
	if got < 200e6 {
		t.Errorf("iperf3 once the shaping is removed: %.1f Mbit/s, want the link's full speed", got/1e6)
	}
	tc, _ = exec.Command("tc", "-n", "sh-a", "qdisc", "show", "dev", "x").Output()
	if strings.Contains(string(tc), "tbf") {
		t.Errorf("tc qdisc show dev x after shape(): %s", tc)
	}
	s.exec(`x.shape(rate="20mbit", burst="32kb", latency="20ms")`)
	mark := s.rt.Journal.Len()
	s.exec(`x.shape(rate=100000000)`)
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	tc, _ = exec.Command("tc", "-n", "sh-a", "qdisc", "show", "dev", "x").Output()
	if !strings.Contains(string(tc), "rate 20Mbit burst 32Kb") {
		t.Errorf("after rolling back a new rate, tc qdisc show dev x: %s, want the 20mbit bucket back", tc)
	}
}

// A delay, jitter or loss needs netem: on a kernel without it, shape()
// fails while the recipe is planned, before any change, saying so.
func TestShapeWithoutNetem(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	has, err := k.HasQdisc("netem")
	if err != nil {
		t.Fatal(err)
	}
	if has {
		t.Skip("this kernel has netem")
	}
	rec := kernel.NewRecorder()
	rec.Real = k
	_, rt, err := runSrc(t, rec, "netem.star", `
a = netns("ne-a"); b = netns("ne-b")
x, y = veth("x", "y", netns=a, peer_netns=b)
x.shape(delay="10ms")
`)
	defer rollback(t, rt)
	if err == nil || !strings.Contains(engine.Backtrace(err), "the kernel has no 'netem' qdisc") || !strings.Contains(engine.Backtrace(err), "netem.star:4:") {
		t.Errorf("planning a delay without netem: %v", err)
	}
	if n := len(rec.Log); n == 0 || strings.Contains(strings.Join(rec.Log, "\n"), "tc") {
		t.Errorf("the plan's changes: %q", rec.Log)
	}
}

// vxlanLab is the kernel selftest's topology: two "hypervisor" namespaces
// joined by a veth underlay, each with a bridge, a vxlan on it and two
// "VM" namespaces, the VMs of one side reaching those of the other.
const vxlanLab = `
hv1 = netns("vx-hv1"); hv2 = netns("vx-hv2")
u1, u2 = veth("u1", "u2", netns=hv1, peer_netns=hv2)
u1.addr("10.4.0.1/24").up(); u2.addr("10.4.0.2/24").up()
vms = {}
def side(hv, n, local, remote):
    br = bridge("br" + n, netns=hv).up()
    vx = vxlan("vx" + n, 42, netns=hv, parent=hv.link("u" + n), local=local, learning=LEARNING, **REMOTE(remote))
    vx.master(br).up()
    for i in [1, 2]:
        vm = netns("vx-vm%s%d" % (n, i))
        e, p = veth("eth0", "p%d" % i, netns=vm, peer_netns=hv, mac="02:00:00:04:0%s:0%d" % (n, i))
        e.addr("10.4.1.%s%d/24" % (n, i)).up()
        p.master(br).up()
        vms[n + str(i)] = vm
    return vx
vx1 = side(hv1, "1", "10.4.0.1", "10.4.0.2")
vx2 = side(hv2, "2", "10.4.0.2", "10.4.0.1")
STATIC()
for a in ["11", "12"]:
    for b in ["21", "22"]:
        reach(vms[a], "10.4.1." + b, count=1)
        reach(vms[b], "10.4.1." + a, count=1)
`

// vxlanRecipe is vxlanLab with learning, to remote VTEPs; or without, to
// the VTEPs that static entries name.
func vxlanRecipe(learning bool) string {
	if learning {
		return strings.NewReplacer("LEARNING", "True", "REMOTE(remote)", `{"remote": remote}`, "STATIC()", "").Replace(vxlanLab)
	}
	static := `
for vx, there, n in [(vx1, "10.4.0.2", "2"), (vx2, "10.4.0.1", "1")]:
    vx.fdb("00:00:00:00:00:00", dst=there)
    for i in [1, 2]:
        vx.fdb("02:00:00:04:0%s:0%d" % (n, i), dst=there)
`
	return strings.NewReplacer("LEARNING", "False", "REMOTE(remote)", "{}", "STATIC()", static).Replace(vxlanLab)
}

// VXLAN between two hypervisor namespaces: the VMs reach across, learning
// where the MACs are, or only by static entries (learning=False); the
// kernel has the vxlan and its entries as iproute2 shows them.
func TestVXLAN(t *testing.T) {
	for _, learning := range []bool{true, false} {
		name := map[bool]string{true: "learning", false: "static"}[learning]
		t.Run(name, func(t *testing.T) {
			onKernel(t, "vxlan.star", vxlanRecipe(learning))
			var links []struct {
				Linkinfo struct {
					InfoKind string `json:"info_kind"`
					InfoData struct {
						ID       int    `json:"id"`
						Remote   string `json:"remote"`
						Local    string `json:"local"`
						Port     int    `json:"port"`
						Learning bool   `json:"learning"`
						Link     string `json:"link"`
					} `json:"info_data"`
				} `json:"linkinfo"`
			}
			if err := json.Unmarshal([]byte(nstest.Ip(t, "vx-hv1", "-d", "-j", "link", "show", "vx1")), &links); err != nil || len(links) != 1 {
				t.Fatalf("ip -d -j link show vx1: %v", err)
			}
			d := links[0].Linkinfo.InfoData
			if links[0].Linkinfo.InfoKind != "vxlan" || d.ID != 42 || d.Local != "10.4.0.1" || d.Port != 4789 || d.Learning != learning || d.Link != "u1" {
				t.Errorf("vx1 as iproute2 shows it: %+v", links[0].Linkinfo)
			}
			if learning && d.Remote != "10.4.0.2" {
				t.Errorf("vx1's remote: %q", d.Remote)
			}
			fdb, err := exec.Command("bridge", "-n", "vx-hv1", "fdb", "show", "dev", "vx1").Output()
			if err != nil {
				t.Fatal(err)
			}
			if !learning {
				for _, want := range []string{"00:00:00:00:00:00 dst 10.4.0.2 self permanent", "02:00:00:04:02:01 dst 10.4.0.2 self permanent"} {
					if !strings.Contains(string(fdb), want) {
						t.Errorf("bridge fdb show dev vx1 has no %q:\n%s", want, fdb)
					}
				}
			}
		})
	}
}

// A failure after the entries rolls back everything, the vxlans and their
// entries with them (nstest checks that nothing is left).
func TestVXLANRollsBack(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	_, rt, err := runSrc(t, k, "vxlan.star", vxlanRecipe(false)+"\nfail(\"after the vxlans\")\n")
	rollback(t, rt)
	if err == nil || !strings.Contains(err.Error(), "after the vxlans") {
		t.Errorf("the recipe's failure: %v", err)
	}
}

// A vxlan in the host namespace would take VXLAN traffic from the machine's
// links, and one that sends to an address on the machine's network would
// send the lab's frames there: with a link of the machine's in the host (a
// stand-in for eth0, with its address range), both are refused while the
// recipe is planned, naming its line.
func TestVXLANInHostRefused(t *testing.T) {
	nstest.Kernel(t)
	for _, c := range [][]string{{"link", "add", "mach0", "type", "veth", "peer", "name", "mach1"}, {"addr", "add", "192.0.2.1/24", "dev", "mach0"}, {"link", "set", "mach0", "up"}, {"link", "set", "mach1", "up"}} {
		nstest.Ip(t, "", c...)
	}
	defer exec.Command("ip", "link", "del", "mach0").Run()
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	for _, tc := range []struct{ src, want string }{
		{"n = netns(\"vh-n\")\nvxlan(\"vx0\", 42, remote=\"192.0.2.7\")\n", `192.0.2.7 is on the machine's network: the host namespace reaches it by its route 192.0.2.0/24 dev mach0`},
		{"n = netns(\"vh-n\")\nvxlan(\"vx0\", 42)\n", `a vxlan in the host namespace takes VXLAN traffic (UDP port 4789) from every link there, and mach0 is the machine's`},
	} {
		rec := kernel.NewRecorder()
		rec.Real = k
		_, rt, err := runSrc(t, rec, "host.star", tc.src)
		rollback(t, rt)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(engine.Backtrace(err), "host.star:2:") {
			t.Errorf("%s: %v\nwant %q, at host.star:2", tc.src, err, tc.want)
		}
	}
}
