package probe_test

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/probe"
)

func startCapture(t *testing.T, l *lab, ns, dev, filter, pcap string) *probe.Capture {
	t.Helper()
	f, err := probe.ParseFilter(filter)
	if err != nil {
		t.Fatal(err)
	}
	c, err := probe.StartCapture(l.k.Path(ns), dev, f, pcap, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func stop(t *testing.T, c *probe.Capture) probe.Counts {
	t.Helper()
	n, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", n)
	return n
}

// linkPackets is the kernel's own count of the packets a link sent and
// received, as `ip -s link` shows it: the independent view of a capture.
func linkPackets(t *testing.T, ns, dev string) int {
	var links []struct {
		Stats64 struct {
			RX, TX struct{ Packets int }
		}
	}
	if err := json.Unmarshal([]byte(nstest.Ip(t, ns, "-j", "-s", "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s link show dev %s: %v", dev, err)
	}
	return links[0].Stats64.RX.Packets + links[0].Stats64.TX.Packets
}

// An IPv4-only pair (IPv6 would add router solicitations and MLD reports
// at times of its own): a first ping costs one ARP exchange and an echo
// and a reply per request; every packet the kernel counts on the link is
// seen once, and written to the pcap file.
func TestCaptureCountsAndPcap(t *testing.T) {
	l := newLab(t)
	for _, ns := range []string{"ca", "cb"} {
		l.netns(ns, true)
		l.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
	}
	l.veth("ca", "va", "cb", "vb")
	l.addr("ca", "va", "10.9.4.1/24")
	l.addr("cb", "vb", "10.9.4.2/24")

	pcap := filepath.Join(t.TempDir(), "va.pcap")
	before := linkPackets(t, "ca", "va")
	all := startCapture(t, l, "ca", "va", "", pcap)
	icmp := startCapture(t, l, "ca", "va", "icmp and host 10.9.4.2", "")
	arp := startCapture(t, l, "ca", "va", "arp", "")
	other := startCapture(t, l, "ca", "va", "icmp and host 10.9.4.3", "")
	peer := startCapture(t, l, "cb", "vb", "ip", "")

	wantReplies(t, ping(t, l, "ca", "10.9.4.2", 3, time.Second), 3)

	n := stop(t, all)
	delta := linkPackets(t, "ca", "va") - before
	if n.Total != delta || n.Total != 8 || n.Class["arp"] != 2 || n.Class["icmp"] != 6 || n.Class["ip"] != 6 || n.Class["ip6"] != 0 || n.Dropped != 0 {
		t.Errorf("capture on va: got %+v; want 8 packets (2 arp, 6 icmp), as ip -s link counts (%d)", n, delta)
	}
	if got := stop(t, icmp); got.Total != 6 || got.Class["icmp"] != 6 || got.Class["arp"] != 0 {
		t.Errorf("icmp and host 10.9.4.2: got %+v, want 6 icmp", got)
	}
	if got := stop(t, arp); got.Total != 2 || got.Class["arp"] != 2 {
		t.Errorf("arp: got %+v, want 2", got)
	}
	if got := stop(t, other); got.Total != 0 {
		t.Errorf("icmp and host 10.9.4.3: got %+v, want none", got)
	}
	if got := stop(t, peer); got.Total != 6 {
		t.Errorf("ip on the peer vb: got %+v, want 6", got)
	}
	if again := stop(t, all); again.Total != n.Total {
		t.Errorf("a second stop: got %+v, want %+v", again, n)
	}

	// Read the file back as a pcap reader would.
	b, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if len(b) < 24 || le.Uint32(b) != 0xa1b2c3d4 || le.Uint16(b[4:]) != 2 || le.Uint16(b[6:]) != 4 || le.Uint32(b[20:]) != 1 {
		t.Fatalf("pcap global header: % x", b[:min(24, len(b))])
	}
	var types []string
	for rec := b[24:]; len(rec) > 0; {
		if len(rec) < 16 {
			t.Fatalf("truncated record header: % x", rec)
		}
		incl, orig := int(le.Uint32(rec[8:])), int(le.Uint32(rec[12:]))
		if incl != orig || incl < 14 || len(rec) < 16+incl || le.Uint32(rec) < 1600000000 {
			t.Fatalf("record header: % x", rec[:16])
		}
		frame := rec[16 : 16+incl]
		types = append(types, map[uint16]string{0x0806: "arp", 0x0800: "ip"}[binary.BigEndian.Uint16(frame[12:])])
		rec = rec[16+incl:]
	}
	if got := strings.Join(types, " "); got != "arp arp ip ip ip ip ip ip" {
		t.Errorf("pcap frames: got %q", got)
	}
	// Where tcpdump is installed (CI), it reads the file too.
	if _, err := exec.LookPath("tcpdump"); err == nil {
		out, err := exec.Command("tcpdump", "-n", "-r", pcap).Output()
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err != nil || len(lines) != 8 ||
			!strings.Contains(lines[0], "ARP") || !strings.Contains(lines[2], "ICMP echo request") {
			t.Errorf("tcpdump -r: %v\n%s", err, out)
		}
	}
}

// On a loopback, each packet is seen once (as received), as tcpdump -i lo
// shows it.
func TestCaptureLoopback(t *testing.T) {
	l := newLab(t)
	l.netns("ca", true)
	c := startCapture(t, l, "ca", "lo", "icmp", "")
	c6 := startCapture(t, l, "ca", "lo", "icmp6 and host ::1", "")
	wantReplies(t, ping(t, l, "ca", "127.0.0.1", 2, time.Second), 2)
	wantReplies(t, ping(t, l, "ca", "::1", 3, time.Second), 3)
	if n := stop(t, c); n.Total != 4 || n.Class["icmp"] != 4 {
		t.Errorf("icmp on lo: got %+v, want 4", n)
	}
	if n := stop(t, c6); n.Total != 6 || n.Class["icmp6"] != 6 || n.Class["ip6"] != 6 {
		t.Errorf("icmp6 on lo: got %+v, want 6", n)
	}
}

func TestCaptureErrors(t *testing.T) {
	l := newLab(t)
	l.netns("ca", true)
	if _, err := probe.StartCapture(l.k.Path("ca"), "nosuch", probe.Filter{}, "", false); err == nil || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("capture on a missing link: got %v", err)
	}
	if _, err := probe.StartCapture(l.k.Path("ca"), "lo", probe.Filter{}, filepath.Join(t.TempDir(), "no", "such.pcap"), false); err == nil {
		t.Errorf("capture to an impossible file: no error")
	}
}

func TestParseFilter(t *testing.T) {
	for _, c := range []struct{ src, err string }{
		{"", ""},
		{"arp", ""},
		{"icmp and host 10.0.0.1", ""},
		{"ip6 and host fd00::1 and udp", ""},
		{"tcp udp", `want "and" before "udp"`},
		{"icmp and", `a term must follow "and"`},
		{"host", `"host" needs an address`},
		{"host 10.0.0.300", `"10.0.0.300" is not an IP address`},
		{"port 53", `unknown term "port"`},
		{"icmp or arp", `want "and" before "or"`},
	} {
		_, err := probe.ParseFilter(c.src)
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("ParseFilter(%q): got %v, want %q", c.src, err, c.err)
		}
	}
}
