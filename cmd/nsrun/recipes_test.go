package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// recipe returns the path of a walkthrough recipe.
func recipe(name string) string { return filepath.Join("..", "..", "recipes", name+".star") }

// A copy of a recipe with one expectation broken fails at that check, with
// its file:line and message, and rolls back everything.
func TestBrokenExpectationRollsBack(t *testing.T) {
	nstest.Kernel(t)
	src, err := os.ReadFile(recipe("openvnet"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(src), `reach(ns1, "172.16.2.3", count = 3)`, `reach(ns1, "172.16.2.9", count = 1)`, 1)
	line := 1 + strings.Count(broken[:strings.Index(broken, "172.16.2.9")], "\n")
	dir := t.TempDir()
	path := filepath.Join(dir, "openvnet.star")
	os.WriteFile(path, []byte(broken), 0o644)
	before := nstest.Snapshot(t)
	r := nsrun(t, path)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", r.code, r.stderr)
	}
	want := regexp.MustCompile(`openvnet\.star:` + itoa(line) + `:\d+: in <toplevel>[\s\S]*reach: no reply from 172\.16\.2\.9 in netns "ns1"`)
	if !want.MatchString(r.stderr) || !strings.Contains(r.stderr, "nsrun: rolled back") {
		t.Errorf("stderr lacks the check's line %d and message:\n%s", line, r.stderr)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s", after)
	}
}

// Without --sandbox, the openvnet lab stays up and iputils' ping confirms
// it; down removes everything.
func TestOpenVNetLabWithRealTools(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	if r := nsrun(t, recipe("openvnet")); r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	defer func() {
		if r := nsrun(t, "down", "openvnet"); r.code != 0 {
			t.Errorf("down: %+v", r)
		}
		if after := nstest.Snapshot(t); after != before {
			t.Errorf("down left:\n%s", after)
		}
	}()
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("iputils ping is not installed (an independent view only; nsrun does not need it)")
	}
	out, err := exec.Command("ip", "netns", "exec", "ns1", "ping", "-c1", "-W2", "172.16.2.3").CombinedOutput()
	if err != nil {
		t.Errorf("ip netns exec ns1 ping -c1 172.16.2.3: %v\n%s", err, out)
	}
}

// The neutron lab: the ruleset holds only the lab's own table, which down
// removes.
func TestNeutronNAT(t *testing.T) {
	nstest.Kernel(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed (an independent view only; nsrun does not need it)")
	}
	nft := func(ns string) string {
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list ruleset in %s: %v\n%s", ns, err, out)
		}
		return string(out)
	}
	rootBefore, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if r := nsrun(t, recipe("neutron")); r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	qrouter := "qrouter-8a6f8d27-5fd2-4b0c-a2f3-1c5e9b3f6d10"
	rules := nft(qrouter)
	tables := regexp.MustCompile(`(?m)^table .*$`).FindAllString(rules, -1)
	if len(tables) != 1 || tables[0] != "table ip nsrun-neutron {" {
		t.Errorf("tables in %s: %q, want only the lab's", qrouter, tables)
	}
	for _, want := range []string{"dnat to 10.0.0.3", "snat to 203.0.113.20", "snat to 203.0.113.10"} {
		if !strings.Contains(rules, want) {
			t.Errorf("the ruleset lacks %q:\n%s", want, rules)
		}
	}
	if r := nsrun(t, "down", "neutron"); r.code != 0 {
		t.Fatalf("down: %+v", r)
	}
	if got := nstest.Ip(t, "", "netns", "list"); got != "" {
		t.Errorf("namespaces left: %s", got)
	}
	if rootAfter, _ := exec.Command("nft", "list", "ruleset").CombinedOutput(); string(rootAfter) != string(rootBefore) {
		t.Errorf("the root ruleset changed:\n%s", rootAfter)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
