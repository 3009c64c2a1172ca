package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/proc"
)

// Strangers: an object of the lab deleted by someone, and another of the
// same name made in its place. Every kind of undo leaves the stranger as it
// is, and `down` still removes all that is the lab's.

// stranger describes, through iproute2 and /proc/sys, the host link name
// and what hangs off it.
func stranger(t *testing.T, name string) string {
	t.Helper()
	s := nstest.Ip(t, "", "-d", "-j", "link", "show", name) +
		nstest.Ip(t, "", "-j", "addr", "show", name) +
		nstest.Ip(t, "", "route", "show", "dev", name)
	for _, key := range []string{"ipv4/conf/" + name + "/forwarding", "ipv4/conf/" + name + "/rp_filter", "ipv4/neigh/" + name + "/retrans_time_ms"} {
		b, err := os.ReadFile("/proc/sys/net/" + key)
		if err != nil {
			t.Fatal(err)
		}
		s += key + "=" + string(b)
	}
	return nstest.StripTimers(s)
}

// A host link of the lab's, with sysctls, an address and a route, is
// replaced by a stranger's with its own: `down` changes none of the
// stranger's (issue 12's first finding: it set forwarding 1->0, rp_filter
// 2->0 and retrans_time_ms, and exited 3 blaming the stranger).
func TestStrangerHostLink(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "sx.star", `n = netns("sx")
a, b = veth("sx0", "sx1", peer_netns = n)
a.addr("10.91.0.1/24").up()
b.addr("10.91.0.2/24").up()
host().sysctl("net.ipv4.conf.sx0.forwarding", "1")
host().sysctl("net.ipv4.conf.sx0.rp_filter", "0")
host().sysctl("net.ipv4.neigh.sx0.retrans_time_ms", "500")
host().route("10.92.0.0/16", via = "10.91.0.2", dev = a)
`)
	if r := nsrun(t, path); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", "sx0").Run() })
	for _, c := range [][]string{
		{"link", "del", "sx0"}, // the lab's: its peer in sx goes with it
		{"link", "add", "sx0", "type", "veth", "peer", "name", "sxp"},
		{"addr", "add", "10.91.0.1/24", "dev", "sx0"},
		{"link", "set", "sx0", "up"},
		{"route", "add", "10.92.0.0/16", "via", "10.91.0.2", "dev", "sx0"},
	} {
		nstest.Ip(t, "", c...)
	}
	for key, v := range map[string]string{"forwarding": "1", "rp_filter": "2"} {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/sx0/"+key, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile("/proc/sys/net/ipv4/neigh/sx0/retrans_time_ms", []byte("1234"), 0o644)
	before := stranger(t, "sx0")
	r := nsrun(t, "down", "sx")
	if r.code != 0 || !strings.Contains(r.stderr, "left alone") {
		t.Errorf("down: %+v", r)
	}
	if after := stranger(t, "sx0"); after != before {
		t.Errorf("the stranger's sx0 changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if _, err := os.Stat(nstest.NetnsDir + "/sx"); err == nil {
		t.Errorf("the lab's namespace is still there")
	}
}

// A namespace of the lab's is replaced by a stranger's of the same name,
// with a link and an nftables table named as the lab's: `down` leaves the
// stranger's namespace and all in it.
func TestStrangerNetns(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "sn.star", `n = netns("sn")
a, b = veth("sn0", "sn1", netns = n)
a.addr("10.93.0.1/24").up()
n.sysctl("net.ipv4.ip_forward", 1)
nat.masquerade(n, out = a)
spawn_in(n, ["sleep", "1006"])
`)
	if r := nsrun(t, path); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", "sn").Run() })
	// The lab's namespace goes away under it (its process keeps it alive,
	// unnamed); a stranger's takes the name.
	nstest.Ip(t, "", "netns", "del", "sn")
	nstest.Ip(t, "", "netns", "add", "sn")
	nstest.Ip(t, "sn", "link", "add", "sn0", "type", "veth", "peer", "name", "sn1")
	nstest.Ip(t, "sn", "addr", "add", "10.93.0.1/24", "dev", "sn0")
	if out, err := exec.Command("ip", "netns", "exec", "sn", "nft", "add", "table", "ip", "nsrun-sn").CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	view := func() string {
		nft, _ := exec.Command("ip", "netns", "exec", "sn", "nft", "list", "ruleset").CombinedOutput()
		return nstest.StripTimers(nstest.Ip(t, "sn", "-d", "-j", "link")+nstest.Ip(t, "sn", "-j", "addr")) + string(nft)
	}
	before := view()
	r := nsrun(t, "down", "sn")
	if r.code != 0 || !strings.Contains(r.stderr, `netns "sn"`) || !strings.Contains(r.stderr, "left alone") {
		t.Errorf("down: %+v", r)
	}
	if after := view(); after != before {
		t.Errorf("the stranger's namespace changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if pids := pgrep("sleep 1006"); len(pids) > 0 {
		t.Errorf("the lab's process %v survived", pids)
	}
}

// pgrep returns the pids of the processes whose command line is cmdline.
func pgrep(cmdline string) []int {
	var pids []int
	for _, pid := range proc.Pids() {
		if strings.Join(proc.Cmdline(pid), " ") == cmdline && proc.Live(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Processes that clear their environment, change user, start a session of
// their own or double-fork are still the lab's: they are in its
// namespaces, which a process cannot leave. None survives `down` or a
// rollback (issue 12's fourth finding: they survived, kept the namespace
// alive, and down waited 10 s and exited 3).
func TestEscapingProcesses(t *testing.T) {
	nstest.Kernel(t)
	escapes := `n = netns("esc")
a, b = veth("esc0", "esc1", peer_netns = n)
exec_in(n, ["sh", "-c", "setsid env -i sleep 1007 >/dev/null 2>&1 &"])
exec_in(n, ["sh", "-c", "setpriv --reuid=65534 --regid=65534 --clear-groups setsid env -i sleep 1008 >/dev/null 2>&1 &"])
exec_in(n, ["sh", "-c", "(env -i sh -c 'sleep 1009 >/dev/null 2>&1 &' &)"])
spawn_in(n, ["sh", "-c", "exec setsid env -i sleep 1010 >/dev/null 2>&1"])
`
	sleeps := []string{"sleep 1007", "sleep 1008", "sleep 1009", "sleep 1010"}
	wait := func() {
		for _, s := range sleeps {
			for i := 0; len(pgrep(s)) == 0 && i < 200; i++ {
				exec.Command("sleep", "0.01").Run()
			}
		}
	}
	survivors := func() []string {
		var left []string
		for _, s := range sleeps {
			if pids := pgrep(s); len(pids) > 0 {
				left = append(left, s)
				for _, pid := range pids {
					syscallKill(t, pid)
				}
			}
		}
		return left
	}
	t.Run("down", func(t *testing.T) {
		if r := nsrun(t, write(t, "esc.star", escapes)); r.code != 0 {
			t.Fatalf("%+v", r)
		}
		wait()
		if r := nsrun(t, "down", "esc"); r.code != 0 {
			t.Errorf("down: %+v", r)
		}
		if left := survivors(); len(left) > 0 {
			t.Errorf("survived down: %v", left)
		}
	})
	t.Run("rollback", func(t *testing.T) {
		r := nsrun(t, write(t, "esc.star", escapes+`exec_in(host(), ["sleep", "0.3"])
fail("now")
`))
		if r.code != 1 {
			t.Errorf("%+v", r)
		}
		if left := survivors(); len(left) > 0 {
			t.Errorf("survived the rollback: %v", left)
		}
	})
}

// An address on a lab link in the host adds a route to its prefix: it is
// held to the policy of host routes (issue 12's third finding:
// addr("200.1.2.3/1") took 128.0.0.0/1 from the machine's default route,
// addr("10.98.5.1/24") a part of its route to 10.98.0.0/16), and refused
// while planning, before anything is changed.
func TestHostAddressPrefixRoute(t *testing.T) {
	nstest.Kernel(t)
	nstest.Ip(t, "", "link", "add", "mach0", "type", "veth", "peer", "name", "mach1")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "mach0").Run() })
	nstest.Ip(t, "", "link", "set", "mach0", "up")
	nstest.Ip(t, "", "route", "add", "10.98.0.0/16", "dev", "mach0")
	nstest.Ip(t, "", "route", "add", "default", "dev", "mach0")
	before := nstest.Snapshot(t)
	for addr, want := range map[string]string{
		"200.1.2.3/1":  "128.0.0.0/1 is too wide",
		"10.98.5.1/24": "10.98.5.0/24 overlaps the machine's route to 10.98.0.0/16",
		"10.98.5.1":    "10.98.5.1/32 overlaps the machine's route to 10.98.0.0/16",
	} {
		path := write(t, "ha.star", `n = netns("ha")
a, b = veth("ha0", "ha1", peer_netns = n)
a.addr("`+addr+`").up()
`)
		r := nsrun(t, path)
		if r.code != 2 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "nothing was changed") || !strings.Contains(r.stderr, "ha.star:3:7") {
			t.Errorf("%s: %+v", addr, r)
		}
		if after := nstest.Snapshot(t); after != before {
			t.Errorf("%s: changed\n%s", addr, after)
		}
	}
	path := write(t, "ha.star", "n = netns(\"ha\")\na, b = veth(\"ha0\", \"ha1\", peer_netns = n)\na.addr(\"10.99.5.1/24\").up()\n")
	if r := nsrun(t, "--rm", path); r.code != 0 {
		t.Errorf("an address that takes nothing of the machine's: %+v", r)
	}
}

// A process the lab starts in the host namespace that clears its
// environment and leaves its session and group is still the lab's: it is
// in the mount namespace its command was given, marked as the lab's.
func TestEscapingHostProcess(t *testing.T) {
	nstest.Kernel(t)
	path := write(t, "esch.star", `exec_in(host(), ["sh", "-c", "setsid env -i sleep 1011 >/dev/null 2>&1 &"])
exec_in(host(), ["sh", "-c", "(env -i setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'sleep 1012 >/dev/null 2>&1 &' &)"])
bridge("esch")
`)
	if r := nsrun(t, path); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	for _, s := range []string{"sleep 1011", "sleep 1012"} {
		for i := 0; len(pgrep(s)) == 0 && i < 200; i++ {
			exec.Command("sleep", "0.01").Run()
		}
	}
	if r := nsrun(t, "down", "esch"); r.code != 0 {
		t.Errorf("down: %+v", r)
	}
	for _, s := range []string{"sleep 1011", "sleep 1012"} {
		if pids := pgrep(s); len(pids) > 0 {
			t.Errorf("%s survived down", s)
			for _, pid := range pids {
				syscallKill(t, pid)
			}
		}
	}
}
