package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// concReps is the number of repetitions of each concurrency scenario
// (issue 4: "over 100 repetitions").
const concReps = 100

// concLimit turns a run that hangs (a deadlock between two nsruns) into a
// failure; it is never an assertion on speed.
const concLimit = 30 * time.Second

// bgNsrun is an nsrun started in the background.
type bgNsrun struct {
	cmd      *exec.Cmd
	ctx      context.Context
	out, err bytes.Buffer
}

// startNsrun starts nsrun with args; ctx bounds it (it is killed when ctx
// ends).
func startNsrun(t *testing.T, ctx context.Context, args ...string) *bgNsrun {
	t.Helper()
	r := &bgNsrun{cmd: exec.CommandContext(ctx, nsrunBin, args...), ctx: ctx}
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.err
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// wait waits for the run to end; a run that ctx had to kill is an error.
func (r *bgNsrun) wait() (result, error) {
	err := r.cmd.Wait()
	res := result{0, r.out.String(), r.err.String()}
	if r.ctx.Err() != nil {
		return res, fmt.Errorf("nsrun %s did not end within %s (a deadlock?); stderr:\n%s", strings.Join(r.cmd.Args[1:], " "), concLimit, res.stderr)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.code = ee.ExitCode()
	} else if err != nil {
		return res, err
	}
	return res, nil
}

// nsrunWithin runs nsrun to its end, failing t if it takes longer than
// concLimit.
func nsrunWithin(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), concLimit)
	defer cancel()
	r, err := startNsrun(t, ctx, args...).wait()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Two runs whose names overlap (both make netns "shared"), started at the
// same time: one wins, the other fails before changing anything and names
// the conflict — whether it meets the winner's namespace while planning or
// the winner's claim on the name. After the winner is taken down, the
// machine is as it was. Who starts first alternates.
func TestConcurrentOverlappingRuns(t *testing.T) {
	nstest.Kernel(t)
	recipes := map[string]string{
		"a": write(t, "a.star", "n = netns(\"shared\")\nnetns(\"only-a\")\nveth(\"ca0\", \"ca1\", peer_netns = n)\n"),
		"b": write(t, "b.star", "n = netns(\"shared\")\nveth(\"cb0\", \"cb1\", peer_netns = n)\n"),
	}
	ways := map[string]int{}      // how the loser learnt of the conflict
	unsaid := map[string]string{} // a loser's stderr without "nothing was changed", by way
	for i := range concReps {
		order := []string{"a", "b"}
		if i%2 == 1 {
			order = []string{"b", "a"}
		}
		before := nstest.Snapshot(t)
		ctx, cancel := context.WithTimeout(context.Background(), concLimit)
		runs := map[string]*bgNsrun{}
		for _, lab := range order {
			runs[lab] = startNsrun(t, ctx, "--name", lab, recipes[lab])
		}
		res := map[string]result{}
		var errs []error
		for _, lab := range order {
			r, err := runs[lab].wait()
			res[lab] = r
			errs = append(errs, err)
		}
		cancel()
		if err := errors.Join(errs...); err != nil {
			concDownAll(t, "a", "b")
			t.Fatalf("repetition %d: %v", i, err)
		}

		var winner, loser string
		switch {
		case res["a"].code == 0 && res["b"].code != 0:
			winner, loser = "a", "b"
		case res["b"].code == 0 && res["a"].code != 0:
			winner, loser = "b", "a"
		default:
			concDownAll(t, "a", "b")
			t.Fatalf("repetition %d (%s first): want exactly one run to succeed, got\na: %+v\nb: %+v", i, order[0], res["a"], res["b"])
		}
		l := res[loser]
		way := ""
		switch {
		case strings.Contains(l.stderr, `"shared" is taken by lab`):
			way = "claim"
		case strings.Contains(l.stderr, `"shared" already exists`):
			way = "planning"
		}
		if l.code != 2 || way == "" {
			t.Errorf("repetition %d (%s first): the loser %q: exit %d, want 2 naming \"shared\" (taken by lab / already exists); stderr:\n%s",
				i, order[0], loser, l.code, l.stderr)
		}
		ways[way]++
		if !strings.Contains(l.stderr, "nothing was changed") {
			// Counted, not fatal, so that the repetitions go on.
			unsaid[way] = l.stderr
		}
		if r := nsrunWithin(t, "down", winner); r.code != 0 {
			concDownAll(t, "a", "b")
			t.Fatalf("repetition %d: down %s: %+v", i, winner, r)
		}
		if after := nstest.Snapshot(t); after != before {
			t.Fatalf("repetition %d (%s won): after down, the machine differs:\n--- before\n%s\n--- after\n%s", i, winner, before, after)
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d repetitions; the loser learnt of the conflict: %v", concReps, ways)
	for way, stderr := range unsaid {
		t.Errorf("a loser that learnt of the conflict by its %s does not say that nothing was changed; stderr:\n%s", way, stderr)
	}
}

// Two runs with disjoint names, started at the same time, both succeed
// (and with --rm leave nothing).
func TestConcurrentDisjointRuns(t *testing.T) {
	nstest.Kernel(t)
	recipes := map[string]string{
		"c": write(t, "c.star", "n = netns(\"dj-c\")\na, b = veth(\"djc0\", \"djc1\", peer_netns = n)\na.up()\nb.up()\n"),
		"d": write(t, "d.star", "n = netns(\"dj-d\")\na, b = veth(\"djd0\", \"djd1\", peer_netns = n)\na.up()\nb.up()\n"),
	}
	before := nstest.Snapshot(t)
	for i := range concReps {
		order := []string{"c", "d"}
		if i%2 == 1 {
			order = []string{"d", "c"}
		}
		ctx, cancel := context.WithTimeout(context.Background(), concLimit)
		runs := map[string]*bgNsrun{}
		for _, lab := range order {
			runs[lab] = startNsrun(t, ctx, "--rm", "--name", lab, recipes[lab])
		}
		for _, lab := range order {
			r, err := runs[lab].wait()
			if err != nil {
				t.Errorf("repetition %d: %v", i, err)
			} else if r.code != 0 {
				t.Errorf("repetition %d (%s first): lab %s: exit %d, want 0; stderr:\n%s", i, order[0], lab, r.code, r.stderr)
			}
		}
		cancel()
		if after := nstest.Snapshot(t); after != before {
			t.Fatalf("repetition %d: the machine differs:\n--- before\n%s\n--- after\n%s", i, before, after)
		}
		if t.Failed() {
			concDownAll(t, "c", "d")
			return
		}
	}
}

// concDownAll takes labs down after a failure, so that one failed repetition
// does not leave the sandbox dirty for the tests after it.
func concDownAll(t *testing.T, labs ...string) {
	t.Helper()
	for _, lab := range labs {
		if r := nsrunWithin(t, "down", lab); r.code != 0 && !strings.Contains(r.stderr, "no lab") {
			t.Errorf("down %s: %+v", lab, r)
		}
	}
}
