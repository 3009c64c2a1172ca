package faultharness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// The fault actions: change k fails, or the run gets SIGKILL, SIGINT,
// SIGTERM or SIGHUP just before change k, once the kernel has made it but
// before its done record, or just after (see runtime/fault/inject.go).
var faultActions = []string{"fail", "kill-before", "kill-made", "kill-after", "int-before", "int-made", "int-after", "term-before", "term-after", "hup-before", "hup-made", "hup-after"}

// Undos are struck too (see strike): a rollback or `down` gets SIGKILL
// before its k-th undo or between a namespace's unmount and the removal of
// its pin, or SIGINT, SIGTERM or SIGHUP before its k-th undo, which it must
// absorb and finish.

// faultRecipes are the recipes the harness runs: the small ones in
// testdata/ through every change and every action (see actionsAt); the walkthroughs (seconds
// each, with their pings) through every change, the actions taking turns.
// The recipes that start daemons (startsDaemons) wait seconds for their
// protocols at every run: cmd/nsrun's TestDaemonRecipesLeaveNothing fails
// and kills them with their daemons up instead.
func faultRecipes(t *testing.T) (every, rotating []string) {
	every = []string{"../testdata/blue.star", "../testdata/lib_user.star", "../testdata/every_change.star"}
	all, err := filepath.Glob("../../../recipes/*.star")
	if err != nil || len(all) == 0 {
		t.Fatalf("no walkthrough recipes: %v", err)
	}
	for _, r := range all {
		if !startsDaemons(t, r) {
			rotating = append(rotating, r)
		}
	}
	return every, rotating
}

// TestFaultInjection fails, interrupts or kills a run at every change of
// every recipe, then requires the machine — every namespace, link (with its
// details), address, route, nftables rule, lab record and process — to be as
// it was, after `nsrun recover` where the run was killed; and decoys, foreign
// objects of every kind beside the lab, never to be touched.
//
// The points are shared out among shards (faultShards), each a copy of the
// test binary in a sandbox of its own, run at once: the machine has a core
// for each.
func TestFaultInjection(t *testing.T) {
	nstest.Kernel(t)
	if testing.Short() {
		t.Skip("the fault-injection harness takes minutes; -short skips it")
	}
	if shard := os.Getenv(shardEnv); shard != "" {
		var i, n int
		if _, err := fmt.Sscanf(shard, "%d/%d", &i, &n); err != nil || n < 1 || i < 0 || i >= n {
			t.Fatalf("%s=%q: want I/N", shardEnv, shard)
		}
		faultShard(t, os.Getenv(binEnv), i, n)
		return
	}
	bin := filepath.Join(t.TempDir(), "nsrun-faultinject")
	if out, err := exec.Command("go", "build", "-tags", "faultinject", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("building with -tags faultinject: %v\n%s", err, out)
	}
	n := runtime.NumCPU()
	if n > faultShards {
		n = faultShards
	}
	type result struct {
		out     []byte
		err     error
		summary string
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sum := filepath.Join(t.TempDir(), fmt.Sprintf("summary%d", i))
			// Started without the sandbox's mark, the test binary makes a
			// sandbox of its own (see nstest.Main).
			cmd := exec.Command(os.Args[0], "-test.run=^TestFaultInjection$", "-test.count=1", "-test.timeout=60m")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d/%d", shardEnv, i, n), binEnv+"="+bin, "NSRUN_FAULT_SUMMARY="+sum)
			out, err := cmd.CombinedOutput()
			b, _ := os.ReadFile(sum)
			results[i] = result{out, err, string(b)}
		}()
	}
	wg.Wait()
	var points, leftovers, touched int
	for i, r := range results {
		var p, l, to int
		if _, err := fmt.Sscanf(r.summary, "fault injection: %d points, %d leftovers, %d foreign objects touched", &p, &l, &to); err != nil || r.err != nil {
			t.Errorf("shard %d/%d: %v\n%s", i, n, r.err, r.out)
		}
		points, leftovers, touched = points+p, leftovers+l, touched+to
	}
	summary := fmt.Sprintf("fault injection: %d points, %d leftovers, %d foreign objects touched (%d shards)", points, leftovers, touched, n)
	t.Log(summary)
	if path := os.Getenv("NSRUN_FAULT_SUMMARY"); path != "" {
		os.WriteFile(path, []byte(summary+"\n"), 0o644) // for CI's log
	}
	if points < 500 {
		t.Errorf("only %d injection points, want at least 500", points)
	}
}

// The shards of the harness, and what they are told by their environment.
const (
	faultShards = 2
	shardEnv    = "NSRUN_FAULT_SHARD" // I/N: this is shard I of N
	binEnv      = "NSRUN_FAULT_BIN"   // the nsrun built with -tags faultinject
)

// faultShard runs shard i of n of the harness's points with bin, in this
// test binary's sandbox.
func faultShard(t *testing.T, bin string, i, n int) {
	decoys := makeDecoys(t)
	every, rotating := faultRecipes(t)

	var points, leftovers, touched int
	// check requires the machine to be as it was and the decoys untouched.
	check := func(what, stderr, before string, lab string) {
		if after := nstest.Snapshot(t); after != before {
			leftovers++
			t.Errorf("%s: left\n%s\nwant\n%s\nstderr:\n%s", what, after, before, stderr)
			nsrun(t, "down", lab)
		}
		if d := decoys(); d != "" {
			touched++
			t.Errorf("%s: a decoy changed:\n%s", what, d)
		}
	}
	// inject runs args with NSRUN_FAULT=spec, and returns its exit code
	// and standard error.
	inject := func(spec string, args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "NSRUN_FAULT="+spec)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		return exitCode(err), stderr.String()
	}
	unit := -1 // each run below is a unit of work, and so is each recipe's undoing
	mine := func() bool { unit++; return unit%n == i }
	run := func(recipe string, k int, action string, at string) {
		if !mine() {
			return
		}
		points++
		before := nstest.Snapshot(t)
		code, stderr := inject(fmt.Sprintf("%d:%s", k, action), "--rm", "-q", recipe)
		what := fmt.Sprintf("%s at change %d, %s", recipe, k, action)
		if r := nsrun(t, "recover"); r.code != 0 {
			t.Errorf("%s: recover: %+v", what, r)
		}
		if code == 3 || code == 2 {
			t.Errorf("%s: exit %d:\n%s", what, code, stderr)
		}
		// A failed change is reported at the recipe line that asked for
		// it, though a run makes its changes behind the recipe.
		if action == "fail" && (!strings.Contains(stderr, at+": in ") || !strings.Contains(stderr, fmt.Sprintf("change %d: injected failure\n", k))) {
			t.Errorf("%s (%s): stderr does not name it:\n%s", what, at, stderr)
		}
		check(what, stderr, before, labOf(recipe))
	}
	// undoing strikes a rollback (of the whole run, failed at its last
	// change) and a `down` with an undo action at undo k; `recover` or a
	// second `down` must then finish the work. It reports whether the
	// action struck (the process was killed at k, not past its last undo).
	strike := func(recipe string, last, k int, action string) (struck bool) {
		lab := labOf(recipe)
		points += 2
		before := nstest.Snapshot(t)
		code, stderr := inject(fmt.Sprintf("%d:fail,%d:%s", last, k, action), "--rm", "-q", recipe)
		what := fmt.Sprintf("%s, rollback, %s at undo %d", recipe, action, k)
		struck = code == 137
		if !struck && code != 1 {
			t.Errorf("%s: exit %d:\n%s", what, code, stderr)
		}
		if r := nsrun(t, "recover"); r.code != 0 {
			t.Errorf("%s: recover: %+v", what, r)
		}
		check(what, stderr, before, lab)
		if r := nsrun(t, "-q", recipe); r.code != 0 {
			t.Fatalf("%s: %+v", recipe, r)
		}
		code, stderr = inject(fmt.Sprintf("%d:%s", k, action), "down", lab)
		what = fmt.Sprintf("%s, down, %s at undo %d", recipe, action, k)
		switch {
		case code == 137:
			struck = true
			if r := nsrun(t, "down", lab); r.code != 0 {
				t.Errorf("%s: second down: %+v", what, r)
			}
		case code != 0:
			t.Errorf("%s: exit %d:\n%s", what, code, stderr)
		}
		check(what, stderr, before, lab)
		return struck
	}
	undoing := func(recipe string, last int) {
		if !mine() {
			return
		}
		undos := 0
		for k := 1; strike(recipe, last, k, "kill-undo"); k++ {
			undos = k
		}
		for k := 1; strike(recipe, last, k, "kill-unpin"); k++ {
		}
		for _, action := range []string{"int-undo", "term-undo", "hup-undo"} {
			for k := 1; k <= undos; k++ {
				strike(recipe, last, k, action)
			}
		}
	}
	for _, recipe := range every {
		at := changes(t, bin, recipe)
		for k := 1; k <= len(at); k++ {
			for _, action := range actionsAt(recipe, k) {
				run(recipe, k, action, at[k-1])
			}
		}
		undoing(recipe, len(at))
	}
	for i, recipe := range rotating {
		at := changes(t, bin, recipe)
		for k := 1; k <= len(at); k++ {
			run(recipe, k, faultActions[(i+k)%len(faultActions)], at[k-1])
		}
	}
	points += applyPoints(t, bin, mine, inject, func(what string) {
		if d := decoys(); d != "" {
			touched++
			t.Errorf("%s: a decoy changed:\n%s", what, d)
		}
	})
	summary := fmt.Sprintf("fault injection: %d points, %d leftovers, %d foreign objects touched", points, leftovers, touched)
	t.Log(summary)
	if path := os.Getenv("NSRUN_FAULT_SUMMARY"); path != "" {
		os.WriteFile(path, []byte(summary+"\n"), 0o644)
	}
}

// actionsAt are the actions that strike change k of one of the recipes
// that every action strikes: all of them, but in every_change.star, whose
// fifty-odd changes each take a whole run, where every change fails and
// gets each kill, and the catchable signals (which the run absorbs the same
// way whatever the change) take turns.
func actionsAt(recipe string, k int) []string {
	if filepath.Base(recipe) != "every_change.star" {
		return faultActions
	}
	var catchable []string
	actions := []string{"fail"}
	for _, a := range faultActions[1:] {
		if strings.HasPrefix(a, "kill-") {
			actions = append(actions, a)
		} else {
			catchable = append(catchable, a)
		}
	}
	return append(actions, catchable[k%len(catchable)])
}

// labOf is the name of the lab a recipe makes by default.
func labOf(recipe string) string { return strings.TrimSuffix(filepath.Base(recipe), ".star") }

// changes lists the recipe positions of the changes a recipe makes, from a
// run's -v log ("+ CHANGE (POS)").
func changes(t *testing.T, bin, recipe string) []string {
	t.Helper()
	out, err := exec.Command(bin, "-v", "--rm", recipe).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", recipe, err, out)
	}
	var at []string
	for _, m := range regexp.MustCompile(`(?m)^\+ .* \(([^()]*)\)$`).FindAllSubmatch(out, -1) {
		at = append(at, string(m[1]))
	}
	if len(at) == 0 {
		t.Fatalf("%s makes no changes:\n%s", recipe, out)
	}
	return at
}

func exitCode(err error) int {
	code, _ := nsexec.ExitCode(err)
	return code
}

// makeDecoys makes foreign objects of every kind beside the labs — a named
// namespace, a veth pair, a bridge with a port, a route, an nftables table —
// and returns a check that reports any change to them.
func makeDecoys(t *testing.T) func() string {
	t.Helper()
	cmds := [][]string{
		{"netns", "add", "decoy-ns"},
		{"link", "add", "decoy0", "type", "veth", "peer", "name", "decoy1"},
		{"link", "add", "decoy-br", "type", "bridge"},
		{"link", "set", "decoy0", "master", "decoy-br"},
		{"link", "set", "decoy-br", "alias", "someone-else"},
		{"addr", "add", "10.66.0.1/24", "dev", "decoy-br"},
		{"link", "set", "decoy-br", "up"},
		{"route", "add", "10.67.0.0/16", "via", "10.66.0.2"},
	}
	for _, c := range cmds {
		nstest.Ip(t, "", c...)
	}
	nft := exec.Command("nft", "add", "table", "ip", "decoy")
	hasNft := nft.Run() == nil
	t.Cleanup(func() {
		nstest.Ip(t, "", "link", "del", "decoy0")
		nstest.Ip(t, "", "link", "del", "decoy-br")
		nstest.Ip(t, "", "netns", "del", "decoy-ns")
		if hasNft {
			exec.Command("nft", "delete", "table", "ip", "decoy").Run()
		}
	})
	state := func() string {
		s := nstest.Ip(t, "", "-d", "-j", "link", "show", "decoy-br") +
			nstest.Ip(t, "", "-d", "-j", "link", "show", "decoy0") +
			nstest.Ip(t, "", "-d", "-j", "link", "show", "decoy1") +
			nstest.Ip(t, "", "-j", "addr", "show", "decoy-br") +
			nstest.Ip(t, "", "route", "show", "10.67.0.0/16") +
			nstest.Ip(t, "decoy-ns", "-d", "-j", "link")
		if hasNft {
			out, _ := exec.Command("nft", "list", "table", "ip", "decoy").CombinedOutput()
			s += string(out)
		}
		return nstest.StripTimers(s)
	}
	want := state()
	return func() string {
		if got := state(); got != want {
			return got
		}
		return ""
	}
}

// startsDaemons reports whether a recipe starts daemons: it calls spawn_in,
// or loads the standard library's routers (frr.star, bird.star).
func startsDaemons(t *testing.T, recipe string) bool {
	b, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	return strings.Contains(s, "spawn_in(") || strings.Contains(s, `"@std//frr.star"`) || strings.Contains(s, `"@std//bird.star"`)
}
