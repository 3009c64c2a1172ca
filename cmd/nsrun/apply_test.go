package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// applyV1 is the lab the apply tests change.
const applyV1 = `
a = netns("apr-a"); b = netns("apr-b"); c = netns("apr-c")
x, y = veth("apr-x", "eth0", netns=a, peer_netns=b)
x.addr("10.71.0.1/24", "10.71.1.1/24").up(); y.addr("10.71.0.2/24").up()
p, q = veth("apr-p", "eth0", netns=a, peer_netns=c)
p.addr("10.72.0.1/24").up(); q.addr("10.72.0.2/24").up()
b.route("10.73.0.0/16", via="10.71.0.1")
`

// writeIn writes src as dir/name and returns its path: two versions of a
// recipe in two directories have the same lab.
func writeIn(t *testing.T, dir, name, src string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// labUp runs recipe, whose lab is lab, and takes the lab down at the
// test's end.
func labUp(t *testing.T, recipe, lab string) {
	t.Helper()
	if r := nsrun(t, "-q", recipe); r.code != 0 {
		t.Fatalf("%s: %+v", recipe, r)
	}
	t.Cleanup(func() { nsrun(t, "down", lab) })
}

// settle is how long the kernel takes to show a link's carrier as it is
// (its link watch runs up to a second late).
const settle = 1500 * time.Millisecond

// labAfter is the lab's snapshot once it has settled, if it differs from
// before at first.
func labAfter(t *testing.T, before string) string {
	t.Helper()
	after := nstest.LabSnapshot(t)
	if after != before {
		time.Sleep(settle)
		after = nstest.LabSnapshot(t)
	}
	return after
}

// An apply that removes a link, an address, a route and a namespace of the
// lab's (by leaving them out, and with the delete builtins), then fails,
// leaves the lab as it was; so does one the recipe's check fails after
// all its changes. A dry run changes nothing, and says the same twice.
func TestApplyFailsBack(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	dir := t.TempDir()
	v1 := writeIn(t, filepath.Join(dir, "v1"), "apr.star", applyV1)
	labUp(t, v1, "apr")
	time.Sleep(settle)
	before := nstest.LabSnapshot(t)
	for _, v2 := range []string{
		// Left out: the namespace apr-c with its link; an address
		// removed, a route replaced, then a failure.
		`
a = netns("apr-a"); b = netns("apr-b")
x, y = veth("apr-x", "eth0", netns=a, peer_netns=b)
x.addr("10.71.0.1/24").up(); y.addr("10.71.0.2/24").up()
b.route("10.73.0.0/16", via="10.71.0.1")
b.route("10.73.0.0/16", via="10.71.0.3", replace=True)
if not ping(b, "10.71.0.99", count=1).ok:  # a plan assumes it passes
    fail("no reply from 10.71.0.99")
`,
		// The delete builtins, from the recipe; then a check fails.
		applyV1 + `
link("apr-a", "apr-x").addr_del("10.71.1.1/24")
ns("apr-b").route_del("10.73.0.0/16")
link("apr-a", "apr-p").delete()
ns("apr-c").delete()
d = netns("apr-d")
reach(d, "10.71.0.1")
`,
	} {
		path := writeIn(t, filepath.Join(dir, "v2"), "apr.star", v2)
		for _, dry := range []bool{true, false} {
			args := []string{"apply", path}
			if dry {
				args = []string{"apply", "--dry-run", path}
			}
			r := nsrun(t, args...)
			switch {
			case dry && r.code != 0:
				t.Errorf("apply --dry-run: %+v", r)
			case !dry && (r.code != 1 || !strings.Contains(r.stderr, `lab "apr" is as it was before the apply`)):
				t.Errorf("apply of a failing recipe: %+v", r)
			}
			if dry {
				if again := nsrun(t, args...); again.stdout != r.stdout {
					t.Errorf("a second dry run says otherwise:\n%s\nthe first:\n%s", again.stdout, r.stdout)
				}
			}
			if after := labAfter(t, before); after != before {
				t.Errorf("apply (dry run %t) of\n%s\nchanged the lab:\n%s\nwant:\n%s", dry, v2, after, before)
			}
		}
	}
	if r := nsrun(t, "check", "apr"); r.code != 0 {
		t.Errorf("check: %+v", r)
	}
}

// What apply refuses, each with a clear error and nothing changed: a lab a
// running nsrun holds, a recipe whose names are another lab's, a removal
// of another lab's object or of the machine's.
func TestApplyRefusals(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	dir := t.TempDir()
	v1 := writeIn(t, filepath.Join(dir, "v1"), "apr.star", applyV1)
	other := write(t, "apr_other.star", `o = netns("apr-o")`+"\n"+`veth("apr-ov", "eth0", peer_netns=o)`+"\n")
	labUp(t, v1, "apr")
	labUp(t, other, "apr_other")
	time.Sleep(settle)
	before := nstest.LabSnapshot(t)
	for _, c := range []struct{ src, want string }{
		{applyV1 + `o = netns("apr-o")` + "\n", `netns "apr-o" is taken by lab "apr_other"`},
		{applyV1 + `veth("apr-ov", "eth1", peer_netns=b)` + "\n", `link name (host namespace) "apr-ov" is taken by lab "apr_other"`},
		{applyV1 + `ns("apr-o").delete()` + "\n", `the lab has no namespace "apr-o"`},
		{applyV1 + `link("host", "apr-ov").delete()` + "\n", `the lab has no link "apr-ov" in netns "host"`},
		{applyV1 + `link("host", "lo").delete()` + "\n", `the lab has no link "lo" in netns "host"`},
		{applyV1 + `host().delete()` + "\n", "host() is the machine's namespace"},
	} {
		path := writeIn(t, filepath.Join(dir, "v2"), "apr.star", c.src)
		r := nsrun(t, "apply", path)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("apply of\n%s\n%+v, want an error naming %q", c.src, r, c.want)
		}
		if after := labAfter(t, before); after != before {
			t.Errorf("apply of\n%s\nchanged the machine:\n%s\nwant:\n%s", c.src, after, before)
		}
	}

	// Held: a run of the lab's name is still going.
	held := writeIn(t, filepath.Join(dir, "held"), "apr_held.star", "n = netns(\"apr-h\")\n"+`exec_in(n, ["sleep", "2"])`+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), concLimit)
	defer cancel()
	run := startNsrun(t, ctx, "-q", held)
	time.Sleep(500 * time.Millisecond)
	r := nsrun(t, "apply", "--name", "apr_held", v1)
	if r.code != 2 || !strings.Contains(r.stderr, `lab "apr_held" is in use by a running nsrun`) {
		t.Errorf("apply of a lab being made: %+v", r)
	}
	if res, err := run.wait(); err != nil || res.code != 0 {
		t.Errorf("the run that held it: %+v, %v", res, err)
	}
	if r := nsrun(t, "down", "apr_held"); r.code != 0 {
		t.Errorf("down: %+v", r)
	}
}

// A process whose command an apply changes is stopped and started anew; if
// the apply then fails, the old one runs again (with a pid of its own,
// which the lab's record knows), as it was started.
func TestApplyRestartsWhatItStopped(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	dir := t.TempDir()
	src := func(cmd, end string) string {
		return `a = netns("aps-a")` + "\n" + `spawn_in(a, ["sleep", "` + cmd + `"], name="sleeper")` + "\n" + end
	}
	v1 := writeIn(t, filepath.Join(dir, "v1"), "aps.star", src("1001", ""))
	labUp(t, v1, "aps")
	// A process is started when spawn_in (or a rollback's restart)
	// returns, by nsrun's helper, which then executes the command: until
	// it has, the helper's command line holds the command's, and around
	// the exec the process may not be seen at all.
	running := func(want string) (got string) {
		for i := 0; i < 100; i++ {
			if got = nstest.Processes("NSRUN_LAB=aps/"); strings.Contains(got, ":"+want) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return got
	}
	if got := running("sleep 1001"); !strings.Contains(got, "sleep 1001") {
		t.Fatalf("v1's process: %s", got)
	}
	v2 := writeIn(t, filepath.Join(dir, "v2"), "aps.star", src("1002", `if not ping(a, "10.79.0.1", count=1).ok:
    fail("no reply")
`))
	if r := nsrun(t, "apply", v2); r.code != 1 || !strings.Contains(r.stderr, "is as it was before the apply") {
		t.Errorf("apply: %+v", r)
	}
	if got := running("sleep 1001"); !strings.Contains(got, "sleep 1001") || strings.Contains(got, "sleep 1002") {
		t.Errorf("after the apply failed, the lab's processes: %s", got)
	}
	if r := nsrun(t, "check", "aps"); r.code != 0 {
		t.Errorf("check: %+v", r)
	}
	// Applied for good, the new command runs instead.
	v3 := writeIn(t, filepath.Join(dir, "v3"), "aps.star", src("1003", ""))
	if r := nsrun(t, "apply", "-q", v3); r.code != 0 {
		t.Errorf("apply: %+v", r)
	}
	if got := running("sleep 1003"); !strings.Contains(got, "sleep 1003") || strings.Contains(got, "sleep 1001") {
		t.Errorf("after the apply, the lab's processes: %s", got)
	}
}

// Applied to its own lab, a recipe changes nothing, not even what it makes
// and undoes itself (every_change.star adds and removes an address, makes,
// moves and deletes a veth, replaces a route): no change is made, and the
// lab, its processes included, is as it was.
func TestApplyOwnRecipeChangesNothing(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	recipe := "testdata/every_change.star"
	labUp(t, recipe, "every_change")
	time.Sleep(settle)
	before := nstest.LabSnapshot(t)
	if r := nsrun(t, "apply", "--dry-run", recipe); r.code != 0 || r.stdout != "0 objects to remove, 0 settings to change, 0 changes to add\n" {
		t.Errorf("apply --dry-run: %+v", r)
	}
	r := nsrun(t, "apply", "-v", recipe)
	if r.code != 0 || strings.Contains(r.stderr, "\n+ ") || strings.HasPrefix(r.stderr, "+ ") {
		t.Errorf("apply -v: %+v", r)
	}
	if after := labAfter(t, before); after != before {
		t.Errorf("the lab after the apply:\n%s\nwant:\n%s", after, before)
	}
}

// An apply that changes a link's rate changes it in place (the link keeps
// its index, tc shows the new rate), says so as a "~" line, and one that
// drops the shaping takes it off; the other links, rules, routes and
// forwarding entries of the lab stay as they were.
func TestApplyChangesRateInPlace(t *testing.T) {
	nstest.Kernel(t)
	recoverAfter(t)
	const lab = `
a = netns("aps-a"); b = netns("aps-b")
x, y = veth("x", "y", netns=a, peer_netns=b)
x.addr("10.74.0.1/24").up(); y.addr("10.74.0.2/24").up()
vx = vxlan("vx0", 9, netns=b, parent=y, learning=False)
vx.fdb("00:00:00:00:00:00", dst="10.74.0.1")
b.route("10.75.0.0/16", via="10.74.0.1", table=7)
b.rule(dst="10.75.0.0/16", table=7)
x.shape(rate=RATE)
`
	dir := t.TempDir()
	v1 := writeIn(t, filepath.Join(dir, "v1"), "aps.star", strings.Replace(lab, "RATE", `"50mbit"`, 1))
	v2 := writeIn(t, filepath.Join(dir, "v2"), "aps.star", strings.Replace(lab, "RATE", `"20mbit", burst="32kb"`, 1))
	v3 := writeIn(t, filepath.Join(dir, "v3"), "aps.star", strings.Replace(lab, "x.shape(rate=RATE)\n", "", 1))
	labUp(t, v1, "aps")
	index := func() string { return strings.Fields(nstest.Ip(t, "aps-a", "-o", "link", "show", "x"))[0] }
	qdisc := func() string {
		out, err := exec.Command("tc", "-n", "aps-a", "qdisc", "show", "dev", "x").Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	was := index()
	others := func() string {
		return nstest.Ip(t, "aps-b", "rule") + nstest.Ip(t, "aps-b", "route", "show", "table", "7") + nstest.Ip(t, "aps-b", "-d", "link", "show", "vx0")
	}
	before := others()
	r := nsrun(t, "apply", "--dry-run", v2)
	if r.code != 0 || !strings.Contains(r.stdout, `~ shape of "x" in netns "aps-a": tbf rate 50mbit burst 62500b latency 50ms -> tbf rate 20mbit burst 32768b latency 50ms`) ||
		!strings.Contains(r.stdout, "0 objects to remove, 1 setting to change, 0 changes to add") {
		t.Errorf("apply --dry-run: %+v", r)
	}
	if r := nsrun(t, "apply", v2); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	if q := qdisc(); !strings.Contains(q, "rate 20Mbit burst 32Kb") {
		t.Errorf("tc after the apply: %s", q)
	}
	if index() != was {
		t.Errorf("the link was made anew: index %s, was %s", index(), was)
	}
	if r := nsrun(t, "apply", v3); r.code != 0 {
		t.Fatalf("apply without the shaping: %+v", r)
	}
	if q := qdisc(); strings.Contains(q, "tbf") || index() != was {
		t.Errorf("tc after an apply without the shaping: %s (index %s, was %s)", q, index(), was)
	}
	if after := others(); after != before {
		t.Errorf("the lab's other objects changed:\n%s\nwant:\n%s", after, before)
	}

	// check sees the shaping and the rule, and their loss.
	if r := nsrun(t, "apply", v2); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	if r := nsrun(t, "check", "aps"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "1 rule)") {
		t.Errorf("check: %+v", r)
	}
	dkExec(t, "tc", "-n", "aps-a", "qdisc", "del", "dev", "x", "root")
	nstest.Ip(t, "aps-b", "rule", "del", "to", "10.75.0.0/16", "table", "7")
	r = nsrun(t, "check", "aps")
	for _, want := range []string{`shaping of "x" in netns "aps-a": is none, not tbf rate 20mbit burst 32768b latency 50ms`, `rule "from all to 10.75.0.0/16 lookup 7" in netns "aps-b": missing`} {
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("check after the shaping and the rule were removed by hand: %+v, want %q", r, want)
		}
	}
}
