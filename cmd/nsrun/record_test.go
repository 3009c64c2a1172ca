package main

import (
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// A failed run kept with --keep-on-error whose state cannot be recorded
// says so (issue 13: Lab.SetState's errors were dropped), on stderr and in
// its JSON: its record still says running, and the next command takes it
// for a dead run's and rolls it back.
func TestKeptStateUnrecorded(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	// A directory in the way of lab.json's new version fails its write.
	path := write(t, "unrec.star", "netns(\"ur1\")\nexec_in(host(), [\"mkdir\", \"/run/nsrun/unrec/lab.json.tmp\"])\nfail(\"stop\")\n")
	r := nsrun(t, "--keep-on-error", "--json", path)
	if r.code != 1 || !strings.Contains(r.stderr, "nsrun: recording the lab: ") || !strings.Contains(r.stderr, "kept the failed lab") {
		t.Fatalf("%+v", r)
	}
	var run resultJSON
	decode(t, r, &run)
	if run.State != "kept" || run.RecordError == nil || !strings.Contains(*run.RecordError, "lab.json.tmp") {
		t.Errorf("run --json: %+v", run)
	}
	if r := nsrun(t, "recover"); r.code != 0 || !strings.Contains(r.stdout, `recovered lab "unrec"`) {
		t.Errorf("recover: %+v", r)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}
