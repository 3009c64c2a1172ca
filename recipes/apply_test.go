package recipes_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nsrun/nsrun/runtime/sandbox"
)

// The parts an apply changes, added to each recipe: v1's, then v2's, with a
// host added, a link (and its namespace) removed, an address, an MTU, a
// route and a NAT rule changed.
const (
	partsV1 = `
_pa = netns("apply-a"); _pb = netns("apply-b"); _pc = netns("apply-c")
_x, _y = veth("ap-x", "ap-y", netns=_pa, peer_netns=_pb)
_x.addr("10.77.0.1/24").up(); _y.addr("10.77.0.2/24").up()
_p, _q = veth("ap-p", "ap-q", netns=_pa, peer_netns=_pc)
_p.addr("10.78.0.1/24").up(); _q.addr("10.78.0.2/24").up()
_pb.route("10.79.0.0/16", via="10.77.0.1")
nat.masquerade(_pa, out=_x, src="10.78.0.0/24")
`
	partsV2 = `
_pa = netns("apply-a"); _pb = netns("apply-b"); _pd = netns("apply-d")
_x, _y = veth("ap-x", "ap-y", netns=_pa, peer_netns=_pb)
_x.set(mtu=1400)
_x.addr("10.77.0.1/24").up(); _y.addr("10.77.0.3/24").up()
_r, _s = veth("ap-r", "ap-s", netns=_pa, peer_netns=_pd)
_r.addr("10.80.0.1/24").up(); _s.addr("10.80.0.2/24").up()
_pb.route("10.79.0.0/16", via="10.77.0.5")
nat.masquerade(_pa, out=_x, src="10.80.0.0/24")
ping(_pd, "10.80.0.1")
`
)

// indexes lists every link's name and index, by namespace, into a file, so
// that a later look can tell which links were made again.
const indexes = `for ns in "" $(ls /run/netns); do if [ -z "$ns" ]; then n=""; else n="-n $ns"; fi; ip $n -o link show | awk -v ns="$ns" '{sub(/@.*/, "", $2); print ns "/" $2 " " $1}'; done | sort`

// Applying an edited recipe to its lab that is up leaves the kernel as a
// fresh run of the edited recipe does (ip -d -j, nft -j, sysctl; MACs
// included), keeps the index of every link both versions have, and leaves
// nothing to do for the same recipe again (a dry run says so, and says the
// same twice). For every walkthrough with its parts changed, and for a
// LAN grown by a host.
func TestApplyEqualsAFreshRun(t *testing.T) {
	if !sandbox.Inside() {
		t.Skip("needs root (real-kernel test; runs inside a sandbox)")
	}
	paths, _ := filepath.Glob("*.star")
	type edit struct{ name, v1, v2 string }
	var all []edit
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, edit{strings.TrimSuffix(p, ".star"), string(src) + partsV1, string(src) + partsV2})
	}
	all = append(all, edit{"parts", partsV1, partsV2}, edit{"parts_back", partsV2, partsV1})
	lan := func(n int) string {
		return fmt.Sprintf(`load("@std//lan.star", "lan")
sw = netns("ap-sw")
lan("br0", {"h%%d" %% i: "10.60.%%d.%%d/16" %% (i // 250, i %% 250 + 1) for i in range(%d)}, netns=sw)
`, n)
	}
	all = append(all, edit{"lan_grown", lan(100), lan(101)})
	for _, e := range all {
		t.Run(e.name, func(t *testing.T) {
			dir := t.TempDir()
			v1, v2 := filepath.Join(dir, "v1", e.name+".star"), filepath.Join(dir, "v2", e.name+".star")
			for f, src := range map[string]string{v1: e.v1, v2: e.v2} {
				if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			keys := scriptSysctls("")
			bin, lab := quote(nsrunBin), quote(e.name)
			applied := inFreshSandbox(t, strings.Join([]string{ // one command a line, under set -e
				bin + " -q " + quote(v1) + " >&2",
				indexes + " > " + quote(dir+"/before"),
				bin + " apply -q " + quote(v2) + " >&2",
				indexes + " > " + quote(dir+"/after"),
				bin + " check " + lab + " >&2",
				bin + " apply --dry-run " + quote(v2) + " > " + quote(dir+"/dry1"),
				bin + " apply --dry-run " + quote(v2) + " > " + quote(dir+"/dry2"),
				"true",
			}, "\n"), bin+" down "+lab, keys)
			fresh := inFreshSandbox(t, bin+" -q "+quote(v2), bin+" down "+lab, keys)
			if t.Failed() {
				return
			}
			fresh.omit(fresh.dynamic)
			applied.omit(fresh.dynamic)
			if diff := cmp.Diff(fresh.ns, applied.ns); diff != "" {
				t.Errorf("the applied lab is not what a fresh run makes (-fresh +applied):\n%s", diff)
			}
			before, after := readIndexes(t, dir+"/before"), readIndexes(t, dir+"/after")
			for name, idx := range before {
				if got, ok := after[name]; ok && got != idx {
					t.Errorf("link %s was made again (index %s, then %s)", name, idx, got)
				}
			}
			dry1, _ := os.ReadFile(dir + "/dry1")
			dry2, _ := os.ReadFile(dir + "/dry2")
			if want := "0 objects to remove, 0 settings to change, 0 changes to add\n"; string(dry1) != want || string(dry2) != string(dry1) {
				t.Errorf("apply --dry-run of the recipe applied:\n%s\nthen:\n%s\nwant %q", dry1, dry2, want)
			}
		})
	}
}

func readIndexes(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}
