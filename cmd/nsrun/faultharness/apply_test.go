package faultharness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// applyLab is the lab the apply points change: every_change.star with a
// namespace more (v2), and an edit of it (v3) that adds a host, removes a
// link and a namespace, changes an address of a namespace's and one of the
// host's, an MTU, a route, a route's type, NAT rules, a rate, a forwarding
// entry and a policy rule.
const applyLab = "applied"

// settle is how long the kernel takes to show a link's carrier as it is
// (its link watch runs up to a second late).
const settle = 1500 * time.Millisecond

// applyVersions writes v2 and v3 into dir and returns their paths.
func applyVersions(t *testing.T, dir string) (v2, v3 string) {
	t.Helper()
	src, err := os.ReadFile("../testdata/every_change.star")
	if err != nil {
		t.Fatal(err)
	}
	// The lab lives through every point: its process must too.
	base := strings.ReplaceAll(string(src), `["sleep", "300"]`, `["sleep", "infinity"]`)
	host := func(name, addr string) string {
		return fmt.Sprintf("%[1]s = netns(%[1]q)\n%[1]sp, %[1]se = veth(%[1]q + \"p0\", \"eth0\", netns = a, peer_netns = %[1]s)\n"+
			"%[1]sp.master(br).up()\n%[1]se.addr(%[2]q).up()\n", name, addr)
	}
	edited := base
	for _, e := range [][2]string{
		{`y.addr("10.99.0.2/24")`, `y.addr("10.99.0.3/24")`},
		{`y.set(mtu = 1400,`, `y.set(mtu = 1450,`},
		{`b.route("10.97.0.0/16", via = "10.99.0.1", metric = 5, replace = True)`, `b.route("10.97.0.0/16", via = "10.99.0.9", metric = 5, replace = True)`},
		{`src = "10.98.0.0/16"`, `src = "10.98.0.0/17"`},
		{`h.addr("10.96.0.1/24")`, `h.addr("10.96.0.2/24")`},
		{"macvlan(\"fmv0\", parent = y, mode = \"bridge\", netns = a).up()\n", ""},
		{`x.shape(rate = "100mbit")`, `x.shape(rate = "80mbit")`},
		{`vx.fdb("00:00:00:00:00:00", dst = "10.99.0.1")`, `vx.fdb("00:00:00:00:00:00", dst = "10.99.0.9")`},
		{`b.route("10.95.0.0/16", type = "blackhole")`, `b.route("10.95.0.0/16", type = "unreachable")`},
		{`b.rule(src = "10.99.0.2", table = 100, priority = 100)`, `b.rule(src = "10.99.0.3", table = 100, priority = 100)`},
		{`port = 5000`, `port = 5001`},
	} {
		if !strings.Contains(edited, e[0]) {
			t.Fatalf("every_change.star has no %s: the apply points need it", e[0])
		}
		edited = strings.ReplaceAll(edited, e[0], e[1])
	}
	v2, v3 = filepath.Join(dir, "v2.star"), filepath.Join(dir, "v3.star")
	for path, s := range map[string]string{v2: base + host("fe", "10.99.0.9/24"), v3: edited + host("fd", "10.99.0.9/24")} {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return v2, v3
}

// applyChanges lists the recipe positions of the changes an apply of v3
// makes to v2's lab, from its -v log.
func applyChanges(t *testing.T, bin, v2, v3 string) []string {
	t.Helper()
	if r := nsrun(t, "-q", "--name", applyLab, v2); r.code != 0 {
		t.Fatalf("%s: %+v", v2, r)
	}
	out, err := exec.Command(bin, "apply", "-v", "--name", applyLab, v3).CombinedOutput()
	if err != nil {
		t.Fatalf("apply %s: %v\n%s", v3, err, out)
	}
	if r := nsrun(t, "down", applyLab); r.code != 0 {
		t.Fatalf("down: %+v", r)
	}
	var at []string
	for _, m := range regexp.MustCompile(`(?m)^\+ .* \(([^()]*)\)$`).FindAllStringSubmatch(string(out), -1) {
		at = append(at, m[1])
	}
	if len(at) < 15 {
		t.Fatalf("apply of %s makes %d changes, want at least 15:\n%s", v3, len(at), out)
	}
	return at
}

// applyPoints fails, interrupts or kills an apply of v3 to v2's lab at each
// of its changes (a failure and two of the signals, in turn), and requires the lab to be v2's
// exactly afterwards (after `nsrun recover` where the apply was killed),
// up, and as its journal says; the same lab takes every point, so a
// rollback that leaves a trace shows at the points after it too.
func applyPoints(t *testing.T, bin string, mine func() bool, inject func(spec string, args ...string) (int, string), untouched func(what string)) (points int) {
	v2, v3 := applyVersions(t, t.TempDir())
	at := applyChanges(t, bin, v2, v3)
	up := false
	for k := 1; k <= len(at); k++ {
		// Each change fails, and gets two of the signals, in turn.
		n := len(faultActions) - 1
		for _, action := range []string{"fail", faultActions[1+(2*k)%n], faultActions[1+(2*k+1)%n]} {
			if !mine() {
				continue
			}
			if !up {
				if r := nsrun(t, "-q", "--name", applyLab, v2); r.code != 0 {
					t.Fatalf("%s: %+v", v2, r)
				}
				up = true
				time.Sleep(settle)
			}
			points++
			before := nstest.LabSnapshot(t)
			code, stderr := inject(fmt.Sprintf("%d:%s", k, action), "apply", "-q", "--name", applyLab, v3)
			what := fmt.Sprintf("apply of %s at change %d (%s), %s", v3, k, at[k-1], action)
			if r := nsrun(t, "recover"); r.code != 0 {
				t.Errorf("%s: recover: %+v", what, r)
			}
			if code == 0 || code == 2 || code == 3 {
				t.Errorf("%s: exit %d:\n%s", what, code, stderr)
			}
			if action == "fail" && !strings.Contains(stderr, fmt.Sprintf("change %d: injected failure\n", k)) {
				t.Errorf("%s: stderr does not name it:\n%s", what, stderr)
			}
			after := nstest.LabSnapshot(t)
			for end := time.Now().Add(settle); after != before && time.Now().Before(end); after = nstest.LabSnapshot(t) {
				time.Sleep(settle / 8)
			}
			if after != before {
				t.Errorf("%s: the lab is not v2's:\n%s\nwant\n%s\nstderr:\n%s", what, after, before, stderr)
				nsrun(t, "down", applyLab)
				up = false
				continue
			}
			if r := nsrun(t, "check", applyLab); r.code != 0 {
				t.Errorf("%s: check: %+v", what, r)
			}
			untouched(what)
		}
	}
	if up {
		if r := nsrun(t, "down", applyLab); r.code != 0 {
			t.Errorf("down %s: %+v", applyLab, r)
		}
	}
	return points
}
