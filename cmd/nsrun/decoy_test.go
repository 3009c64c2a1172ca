package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// The decoys: objects someone else made, named like a lab's, each with a
// detail of its own that shows if nsrun touched it.
const (
	decoyVeth   = "dk0" // and its peer dk1, a port of the decoy bridge
	decoyPeer   = "dk1"
	decoyBridge = "dkbr"
	decoyNetns  = "dkns"
	decoyVxlan  = "dkvx"          // VNI 42, the one the recipes' vxlans use
	decoyLab    = "dk"            // the lab the decoys are named after: its NAT table is nsrun-dk
	decoyDir    = nstest.DecoyDir // the machine's files: conf, and dir/file
)

// dkExec runs a command and returns its output, failing t if it fails.
func dkExec(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// dkTimers matches a bridge's or a port's running dkTimers, which tick on their
// own: they are not state anyone changed.
var dkTimers = regexp.MustCompile(`("?\w+_timer"?:?\s*)[\d.]+`)

// dkStable is a description of the machine without its ticking dkTimers.
func dkStable(s string) string { return dkTimers.ReplaceAllString(s, "${1}T") }

// plantDecoys makes the decoys with iproute2 and nft, independently of
// nsrun, and removes them by their exact names when t ends.
func plantDecoys(t *testing.T, withNft bool) {
	t.Helper()
	t.Cleanup(func() {
		os.RemoveAll(decoyDir)
		exec.Command("ip", "link", "del", decoyVeth).Run()
		exec.Command("ip", "link", "del", decoyBridge).Run()
		exec.Command("ip", "link", "del", decoyVxlan).Run()
		exec.Command("ip", "netns", "del", decoyNetns).Run()
		if withNft {
			exec.Command("nft", "delete", "table", "ip", "nsrun-"+decoyLab).Run()
			exec.Command("nft", "delete", "table", "ip", "nsrun-neutron").Run()
		}
	})
	for _, args := range [][]string{
		{"link", "add", decoyVeth, "address", "02:00:de:c0:00:01", "type", "veth", "peer", "name", decoyPeer, "address", "02:00:de:c0:00:02"},
		{"link", "set", decoyVeth, "alias", "decoy veth", "mtu", "1400"},
		{"link", "add", decoyBridge, "address", "02:00:de:c0:00:03", "type", "bridge"},
		{"link", "set", decoyBridge, "alias", "decoy bridge", "up"},
		{"link", "set", decoyPeer, "master", decoyBridge, "up"},
		{"netns", "add", decoyNetns},
		{"-n", decoyNetns, "link", "set", "lo", "alias", "decoy netns"},
		{"link", "add", decoyVxlan, "address", "02:00:de:c0:00:04", "type", "vxlan", "id", "42", "dstport", "4789", "nolearning"},
		{"link", "set", decoyVxlan, "alias", "decoy vxlan"},
	} {
		nstest.Ip(t, "", args...)
	}
	dkExec(t, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", decoyVxlan, "dst", "10.9.0.99")
	if err := os.MkdirAll(decoyDir+"/dir", 0o755); err != nil {
		t.Fatal(err)
	}
	for path, content := range map[string]string{decoyDir + "/conf": "decoy conf\n", decoyDir + "/dir/file": "decoy file\n"} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !withNft {
		return
	}
	// nsrun's own table names, in the host namespace (where nsrun never
	// does NAT) and in the decoy namespace; none has a hook, so they never
	// see a packet.
	for _, ns := range []string{"", decoyNetns} {
		for _, table := range []string{"nsrun-" + decoyLab, "nsrun-neutron"} {
			for _, cmd := range []string{
				"add table ip " + table,
				"add chain ip " + table + " decoy",
				"add rule ip " + table + " decoy ip saddr 192.0.2.99 drop comment \"decoy rule\"",
			} {
				dkNft(t, ns, strings.Fields(cmd)...)
			}
		}
	}
}

// dkNft runs nft in namespace ns ("" for the host's).
func dkNft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	if ns == "" {
		return dkExec(t, "nft", args...)
	}
	return dkExec(t, "ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
}

// dkState is the decoys' full state as iproute2 and nft see it.
func dkState(t *testing.T, withNft bool) string {
	t.Helper()
	var b strings.Builder
	for _, l := range []string{decoyVeth, decoyPeer, decoyBridge} {
		fmt.Fprintf(&b, "link %s: %s\n", l, nstest.Ip(t, "", "-d", "-j", "link", "show", l))
	}
	fmt.Fprintf(&b, "ports of %s: %s\n", decoyBridge, nstest.Ip(t, "", "-j", "link", "show", "master", decoyBridge))
	fmt.Fprintf(&b, "link %s: %s\n", decoyVxlan, nstest.Ip(t, "", "-d", "-j", "link", "show", decoyVxlan))
	fmt.Fprintf(&b, "fdb of %s: %s\n", decoyVxlan, dkExec(t, "bridge", "fdb", "show", "dev", decoyVxlan))
	var st syscall.Stat_t
	if err := syscall.Stat(nstest.NetnsDir+"/"+decoyNetns, &st); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "netns %s: inode %d\n", decoyNetns, st.Ino)
	fmt.Fprintf(&b, "links in %s: %s\n", decoyNetns, nstest.Ip(t, decoyNetns, "-d", "-j", "link"))
	fmt.Fprintf(&b, "files: %s", dkExec(t, "sh", "-c", "cd "+decoyDir+" && ls -lnR --time-style=+ . && cat conf dir/file"))
	if withNft {
		fmt.Fprintf(&b, "host ruleset: %s\n", dkNft(t, "", "-a", "list", "ruleset"))
		fmt.Fprintf(&b, "%s ruleset: %s\n", decoyNetns, dkNft(t, decoyNetns, "-a", "list", "ruleset"))
	}
	return dkStable(b.String())
}

// nodeFiles is a recipe whose node has files of its own where the decoy
// files are.
const nodeFiles = `n = netns("dk-n", private = ["` + decoyDir + `/dir"])
n.write_file("` + decoyDir + `/conf", "lab conf\n")
n.write_file("` + decoyDir + `/dir/new", "lab file\n")
r = exec_in(n, "cat ` + decoyDir + `/conf; ls ` + decoyDir + `/dir; cat ` + decoyDir + `/dir/new")
if r.stdout != "lab conf\nnew\nlab file\n":
    fail("the node sees " + repr(r.stdout))
`

// Decoys survive: with a veth, a bridge, a named namespace and nftables
// tables named like a recipe's objects (and like the lab's NAT table), runs
// that collide with them fail — before changing anything if the planning
// finds it, rolled back if only the real run does — runs that do not
// collide succeed, and every decoy is unchanged after each run and after
// each `down`.
func TestDecoysSurvive(t *testing.T) {
	nstest.Kernel(t)
	_, err := exec.LookPath("nft")
	withNft := err == nil
	if !withNft {
		t.Log("nft is not installed: no decoy nftables tables")
	}
	plantDecoys(t, withNft)
	want := dkState(t, withNft)
	machine := dkStable(nstest.Snapshot(t))
	// exec_in looks at the machine: what follows it is left to the real
	// run, whose rollback then must spare the decoy.
	const observe = "exec_in(host(), \"true\")\n"
	nat := "nat.masquerade(n, out = a, src = \"10.9.0.0/24\")\n"
	for _, tc := range []struct {
		name   string
		recipe string // run as lab dk; "" for neutron
		code   int
		want   []string // in stderr
	}{
		{"veth", "n = netns(\"dk-n\")\nveth(\"dk0\", \"dkx\", peer_netns = n)\n", 2, []string{`"dk0"`, "already exists", "nothing was changed"}},
		{"veth peer", "n = netns(\"dk-n\")\nveth(\"dkx\", \"dk1\", netns = n, peer_netns = host())\n", 2, []string{`"dk1"`, "already exists", "nothing was changed"}},
		{"bridge", "netns(\"dk-n\")\nbridge(\"dkbr\")\n", 2, []string{`"dkbr"`, "already exists", "nothing was changed"}},
		{"netns", "n = netns(\"dkns\")\na, b = veth(\"dkx\", \"dky\", netns = n, peer_netns = n)\n" + nat, 2, []string{`"dkns"`, "already exists", "nothing was changed"}},
		{"veth after observing", "n = netns(\"dk-n\")\n" + observe + "veth(\"dk0\", \"dkx\", peer_netns = n)\n", 1, []string{`"dk0"`, "rolled back"}},
		{"bridge after observing", "netns(\"dk-n\")\n" + observe + "bridge(\"dkbr\")\n", 1, []string{`"dkbr"`, "rolled back"}},
		{"netns after observing", "netns(\"dk-n\")\n" + observe + "netns(\"dkns\")\n", 1, []string{`"dkns"`, "rolled back"}},
		{"vxlan", "netns(\"dk-n\")\nvxlan(\"dkvx\", 43)\n", 2, []string{`"dkvx"`, "already exists", "nothing was changed"}},
		// A vxlan of the decoy's VNI and port, in a namespace of the lab's:
		// no collision, and its entries are its own.
		{"vxlan of the same VNI", "n = netns(\"dk-n\")\nvx = vxlan(\"dkvx\", 42, netns = n, learning = False)\nvx.fdb(\"00:00:00:00:00:00\", dst = \"10.9.0.99\")\n", 0, nil},
		{"vxlan of the same VNI, failed", "n = netns(\"dk-n\")\nvx = vxlan(\"dkvx\", 42, netns = n, learning = False)\nvx.fdb(\"00:00:00:00:00:00\", dst = \"10.9.0.99\")\n" + observe + "fail(\"after the vxlan\")\n", 1, []string{"rolled back"}},
		{"nat in host", "n = netns(\"dk-n\")\na, b = veth(\"dkx\", \"dky\", peer_netns = n)\nnat.masquerade(host(), out = a, src = \"10.9.0.0/24\")\n", 2, []string{"nothing was changed"}},
		// The decoys' names, in the lab's own namespace: no collision.
		{"same names elsewhere", "n = netns(\"dk-n\")\na, b = veth(\"dk0\", \"dk1\", netns = n, peer_netns = n)\nbr = bridge(\"dkbr\", netns = n).up()\nb.master(br).up()\na.addr(\"10.9.0.1/24\").up()\n" + nat, 0, nil},
		{"neutron", "", 0, nil},
		// A node's own files over the decoy files: the node sees its own,
		// the machine's are untouched, run, failed or brought down.
		{"files over the machine's", nodeFiles, 0, nil},
		{"files over the machine's, failed", nodeFiles + "fail(\"after the files\")\n", 1, []string{"rolled back"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab, path := decoyLab, ""
			if tc.recipe == "" {
				lab, path = "neutron", recipe("neutron")
			} else {
				path = write(t, lab+".star", tc.recipe)
			}
			r := nsrunWithin(t, "--name", lab, path)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if got := dkState(t, withNft); got != want {
				t.Errorf("the run changed a decoy:\n--- before\n%s\n--- after\n%s", want, got)
			}
			if r.code == 0 {
				if d := nsrunWithin(t, "down", lab); d.code != 0 {
					t.Errorf("down %s: %+v", lab, d)
				}
				if got := dkState(t, withNft); got != want {
					t.Errorf("down changed a decoy:\n--- before\n%s\n--- after\n%s", want, got)
				}
			} else if _, err := os.Stat(nstest.StateDir + "/" + lab); err == nil {
				t.Errorf("the failed run left its lab record")
				nsrunWithin(t, "down", lab)
			}
			if got := dkStable(nstest.Snapshot(t)); got != machine {
				t.Errorf("the machine differs:\n--- before\n%s\n--- after\n%s", machine, got)
			}
		})
	}
}
