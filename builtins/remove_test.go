package builtins_test

import (
	"os/exec"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

const removalTopology = `
a = netns("rm-a"); b = netns("rm-b")
x, y = veth("x", "y", netns=a, peer_netns=b)
x.addr("10.9.0.1/24", "10.9.5.1/24", "fd09::1/64").up()
y.addr("10.9.0.2/24").up()
a.route("10.1.0.0/16", via="10.9.0.2")
a.route("10.2.0.0/16", via="10.9.0.2", metric=7)
`

// seen is namespace rm-a as iproute2 shows it: its global addresses (not
// the links' state, nor their link-local addresses, which come in their
// time) and its routes.
func seen(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(nstest.Ip(t, "rm-a", "-br", "addr", "show", "scope", "global"), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			b.WriteString(f[0] + " " + strings.Join(f[2:], " ") + "\n")
		}
	}
	return b.String() + nstest.Ip(t, "rm-a", "route") + nstest.Ip(t, "rm-a", "-6", "route", "show", "scope", "global")
}

// An input that removes addresses and a route of the lab's and replaces
// another, then fails, leaves the lab as it was before it (as the REPL rolls
// back an input); what it removed is the lab's again, to remove later.
func TestRemovalsRollBack(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	s := newSession(t, k)
	defer rollback(t, s.rt)
	s.exec(removalTopology)
	before := seen(t)
	mark := s.rt.Journal.Len()
	s.exec(`
x.addr_del("10.9.5.1/24", "fd09::1/64")
a.route("10.1.0.0/16", via="10.9.0.2", metric=0, dev=x, replace=True)
a.route_del("10.2.0.0/16")
`)
	during := seen(t)
	for _, gone := range []string{"10.9.5.1/24", "fd09::1/64", "10.2.0.0/16"} {
		if strings.Contains(during, gone) {
			t.Errorf("%s is still there after its removal:\n%s", gone, during)
		}
	}
	if !strings.Contains(during, "10.1.0.0/16 via 10.9.0.2 dev x proto 78") {
		t.Errorf("the replaced route:\n%s", during)
	}
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	if after := seen(t); after != before {
		t.Errorf("after the rollback:\n%s\nwant, as before:\n%s", after, before)
	}
	s.exec(`x.addr_del("10.9.5.1/24"); a.route_del("10.2.0.0/16", metric=7)`)
}

// Only what the lab made may be removed or replaced: the kernel's link-local
// address and subnet route, an address and a route added by hand (named
// like the lab's would be). Each is refused before any change.
func TestRemovalsOnlyTheLabs(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	s := newSession(t, k)
	defer rollback(t, s.rt)
	s.exec(removalTopology)
	for _, c := range [][]string{
		{"addr", "add", "10.9.7.1/24", "dev", "x"},
		{"route", "add", "10.3.0.0/16", "via", "10.9.0.2"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", "rm-a"}, c...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", c, err, out)
		}
	}
	ll := strings.Fields(nstest.Ip(t, "rm-a", "-6", "-br", "addr", "show", "x", "scope", "link"))
	if len(ll) < 3 {
		t.Fatalf("no link-local address on x: %v", ll)
	}
	n := s.rt.Journal.Len()
	for _, c := range []struct{ src, want string }{
		{`x.addr_del("10.9.7.1/24")`, `addr_del: 10.9.7.1/24 on "x" in netns "rm-a" is not an address this lab added`},
		{`x.addr_del("` + ll[2] + `")`, "is not an address this lab added"},
		{`a.route_del("10.9.0.0/24")`, `route_del: netns "rm-a" has no route of this lab's to 10.9.0.0/24`},
		{`a.route_del("10.3.0.0/16")`, `has no route of this lab's to 10.3.0.0/16`},
		{`a.route("10.3.0.0/16", via="10.9.0.2", replace=True)`, "a route to that destination exists, not the lab's (replace=True replaces only the lab's own)"},
		{`a.route("10.1.0.0/16", via="10.9.0.2", dev=x)`, "(the lab's: pass replace=True to replace it)"},
		{`a.route_del("default")`, `has no route of this lab's to default`},
	} {
		_, err := s.eval(c.src)
		if err == nil || !strings.Contains(engine.Backtrace(err), c.want) {
			t.Errorf("%s: %v, want %q", c.src, err, c.want)
		}
	}
	if s.rt.Journal.Len() != n {
		t.Errorf("refused removals were journaled: %v", s.rt.Journal.Since(n))
	}
	for _, still := range []string{"10.9.7.1/24", "10.3.0.0/16 via 10.9.0.2"} {
		if got := seen(t); !strings.Contains(got, still) {
			t.Errorf("%s, not the lab's, is gone:\n%s", still, got)
		}
	}
	exec.Command("ip", "-n", "rm-a", "route", "del", "10.3.0.0/16").Run()
	exec.Command("ip", "-n", "rm-a", "addr", "del", "10.9.7.1/24", "dev", "x").Run()
}

// eval runs src as the session's next input, and returns its error.
func (s *session) eval(src string) (starlark.StringDict, error) {
	return starlark.ExecFileOptions(engine.FileOptions, s.thread, "input.star", src, s.globals)
}
