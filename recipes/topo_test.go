package recipes_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// topology is what a Mininet topology is, as far as a test script sees it:
// who reaches whom (pingall), each host's address and first interface, and
// the links by their interfaces' names.
type topology struct {
	Reach map[string]map[string]bool
	Hosts map[string]string // name -> "10.0.0.1 h1-eth0"
	Links []string          // "h1-eth0 s1-eth1", sorted
}

// The standard library's topologies are Mininet's: for each, a recipe of
// @std//topo.star and `mn --topo X --test pingall` (where Mininet is
// installed) give the same pingall matrix, host addresses, interface names
// and links.
func TestTopoMatchesMininet(t *testing.T) {
	nstest.Kernel(t)
	cases := []struct{ name, mn, star string }{
		{"single", "single,3", "single(3)"},
		{"linear", "linear,4", "linear(4)"},
		{"linear_n", "linear,3,2", "linear(3, 2)"},
		{"tree", "tree,depth=2,fanout=2", "tree(depth = 2, fanout = 2)"},
		{"torus", "torus,3,3", "torus(3, 3)"},
	}
	_, errMN := exec.LookPath("mn")
	_, errBrctl := exec.LookPath("brctl")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ours := topoOfRecipe(t, c.star)
			for src, row := range ours.Reach {
				for dst, ok := range row {
					if !ok {
						t.Errorf("%s does not reach %s", src, dst)
					}
				}
			}
			if errMN != nil || errBrctl != nil {
				t.Skipf("Mininet is not installed (mn and brctl: apt-get install mininet bridge-utils): not compared")
			}
			theirs := topoOfMininet(t, c.mn)
			// Mininet's pingall sends one ping a pair: through STP
			// bridges on a loaded machine one is lost now and then.
			// What is compared is the topology; Mininet runs again.
			for try := 1; try < 3 && !reachesAll(theirs); try++ {
				t.Logf("mn --topo %s: a ping was lost (try %d): running it again", c.mn, try)
				theirs = topoOfMininet(t, c.mn)
			}
			if diff := cmp.Diff(theirs, ours); diff != "" {
				t.Errorf("topo.star's %s differs from mn --topo %s (-mininet +nsrun):\n%s", c.star, c.mn, diff)
			}
		})
	}
}

// reachesAll reports whether every host of t reached every other.
func reachesAll(t topology) bool {
	for _, row := range t.Reach {
		for _, ok := range row {
			if !ok {
				return false
			}
		}
	}
	return true
}

// topoOfRecipe builds star (a call of topo.star) with nsrun, in a sandbox
// of its own, and reads the topology from what the recipe prints.
func topoOfRecipe(t *testing.T, star string) topology {
	t.Helper()
	recipe := fmt.Sprintf(`load("@std//topo.star", "single", "linear", "tree", "torus", "wait_converged")
t = %s
wait_converged(t)
names = sorted(t.hosts.keys())
m = pingall([t.hosts[h] for h in names])
hosts = {}
for l in t.links:
    for i in range(2):
        n = l.nodes[i]
        if n in t.hosts and n not in hosts:
            hosts[n] = t.ips[n] + " " + l.intfs[i].name
print(json.encode(struct(reach = m, hosts = hosts, links = sorted([l.intfs[0].name + " " + l.intfs[1].name for l in t.links]))))
`, star)
	path := filepath.Join(t.TempDir(), "topo.star")
	if err := os.WriteFile(path, []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := nstest.Run(t, exec.Command(nsrunBin, "--sandbox", "--rm", path))
	if code != 0 {
		t.Fatalf("nsrun %s: exit %d\n%s", star, code, stderr)
	}
	var got struct {
		Reach map[string]map[string]bool
		Hosts map[string]string
		Links []string
	}
	if err := json.Unmarshal([]byte(lastLine(out)), &got); err != nil {
		t.Fatalf("recipe output: %v\n%s", err, out)
	}
	return topology(got)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// topoOfMininet runs `mn --topo topo --test pingall` with Linux bridges
// (STP for a torus) in a network and mount namespace of its own, where
// /proc/sys is read-only: Mininet raises global limits (kernel.pty.max,
// net.core.*) that are the machine's, and copes when it cannot.
func topoOfMininet(t *testing.T, topo string) topology {
	t.Helper()
	dir := t.TempDir()
	pre := filepath.Join(dir, "pre.mn")
	script := `px for h in net.hosts: print("host", h.name, h.IP(), h.defaultIntf().name)
px for l in net.links: print("link", l.intf1.name, l.intf2.name)
`
	if err := os.WriteFile(pre, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	sw := "lxbr"
	if strings.HasPrefix(topo, "torus") {
		sw = "lxbr,stp=1"
	}
	cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
		`mount -n -t tmpfs tmpfs /run && ip link set lo up && mount -n --bind /proc/sys /proc/sys && mount -n -o remount,bind,ro /proc/sys && exec mn --topo "$1" --switch "$2" --controller none --pre "$3" --test pingall`,
		"sh", topo, sw, pre)
	cmd.Dir = dir
	code, out, stderr := nstest.Run(t, cmd)
	if code != 0 {
		t.Fatalf("mn --topo %s: exit %d\n%s\n%s", topo, code, out, stderr)
	}
	got := topology{Reach: map[string]map[string]bool{}, Hosts: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(out + "\n" + stderr))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "host":
			got.Hosts[f[1]] = f[2] + " " + f[3]
		case len(f) == 3 && f[0] == "link":
			got.Links = append(got.Links, f[1]+" "+f[2])
		case len(f) >= 2 && f[1] == "->":
			got.Reach[f[0]] = map[string]bool{}
		}
	}
	// pingall's lines name the hosts reached, X for one that is not, in
	// the order of the hosts but the source.
	var names []string
	for h := range got.Hosts {
		names = append(names, h)
	}
	slices.SortFunc(names, func(a, b string) int { return naturalCompare(a, b) })
	sc = bufio.NewScanner(strings.NewReader(out + "\n" + stderr))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1] != "->" {
			continue
		}
		others := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == f[0] })
		for i, r := range f[2:] {
			if i < len(others) {
				got.Reach[f[0]][others[i]] = r != "X"
			}
		}
	}
	slices.Sort(got.Links)
	if len(got.Reach) == 0 || len(got.Hosts) == 0 {
		t.Fatalf("mn --topo %s printed no pingall or hosts:\n%s\n%s", topo, out, stderr)
	}
	return got
}

// naturalCompare orders names as Mininet's natural sort does: runs of
// digits as numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := a[0] >= '0' && a[0] <= '9', b[0] >= '0' && b[0] <= '9'
		if da && db {
			i, j := digits(a), digits(b)
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
