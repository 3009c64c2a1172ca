package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/sandbox"
)

// decode parses a command's stdout, which must be one JSON document and
// nothing else.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%+v", err, r)
	}
}

// run --json, ls --json and down --json print what happened on stdout; the
// recipe's print()s and the human messages go to stderr; exit codes are as
// without --json.
func TestRunLsDownJSON(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	path := write(t, "jsonok.star", "n = netns(\"jo1\")\nprint(\"hello\")\n")
	r := nsrun(t, "--json", path)
	if r.code != 0 || !strings.Contains(r.stderr, "hello\n") || !strings.Contains(r.stderr, `lab "jsonok" is up (1 change)`) {
		t.Fatalf("run --json: %+v", r)
	}
	var run resultJSON
	decode(t, r, &run)
	if run.Lab != "jsonok" || run.State != "up" || run.Stage != "run" || run.Error != nil || run.RecordError != nil {
		t.Errorf("run --json: %+v", run)
	}
	if len(run.Made) != 1 || run.Made[0].Op != "netns" || run.Made[0].Object != `netns "jo1"` || !strings.HasSuffix(run.Made[0].Pos, "jsonok.star:1:10") {
		t.Errorf("made: %+v", run.Made)
	}
	if run.Undone == nil || len(run.Undone) != 0 || run.Left == nil || run.Failed == nil || run.Spared == nil {
		t.Errorf("empty lists must be [], not null or missing: %s", r.stdout)
	}

	r = nsrun(t, "ls", "--json")
	var labs []labJSON
	decode(t, r, &labs)
	if r.code != 0 || len(labs) != 1 {
		t.Fatalf("ls --json: %+v", r)
	}
	if l := labs[0]; l.Lab != "jsonok" || l.State != "up" || l.Changes != 1 || l.ID == "" || l.Started == "" || l.Recipe != path || l.Sandbox != "" {
		t.Errorf("ls --json: %+v", l)
	}

	r = nsrun(t, "down", "--json", "jsonok", "nosuch")
	var downs []resultJSON
	decode(t, r, &downs)
	if r.code != 2 || len(downs) != 2 || !strings.Contains(r.stderr, `no lab "nosuch"`) {
		t.Fatalf("down --json jsonok nosuch: %+v", r)
	}
	if d := downs[0]; d.Lab != "jsonok" || d.State != "removed" || d.Error != nil || len(d.Failed) != 0 || len(d.Undone) != 1 ||
		d.Undone[0].Op != "netns" || !strings.HasSuffix(d.Undone[0].Pos, "jsonok.star:1:10") || d.Stage != "" || d.Made != nil {
		t.Errorf("down --json of jsonok: %+v", d)
	}
	if d := downs[1]; d.Lab != "nosuch" || d.State != "" || d.Error == nil || !strings.Contains(d.Error.Message, `no lab "nosuch"`) {
		t.Errorf("down --json of nosuch: %+v", d)
	}
	if r := nsrun(t, "ls", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("ls --json with no lab: %+v", r)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}
}

// A run that fails says where, in JSON as on stderr: a failure of the real
// run (after the recipe looked at the network, so the preflight could not
// find it) with what was made and rolled back; a fail() the preflight
// finds, and a syntax error, with nothing made.
func TestRunJSONFailed(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	path := write(t, "jsonlate.star", "n = netns(\"jf1\")\nexec_in(n, [\"true\"])\nfail(\"late\")\n")
	r := nsrun(t, "--json", path)
	if r.code != 1 || !strings.Contains(r.stderr, "Error in fail: late") || !strings.Contains(r.stderr, `nsrun: rolled back 1 change (netns "jf1"`) {
		t.Fatalf("run --json of a failing recipe: %+v", r)
	}
	var run resultJSON
	decode(t, r, &run)
	if run.Lab != "jsonlate" || run.State != "removed" || run.Stage != "run" || len(run.Failed) != 0 {
		t.Errorf("run --json: %+v", run)
	}
	if run.Error == nil || run.Error.Message != "fail: late" || !strings.HasSuffix(run.Error.Pos, "jsonlate.star:3:5") {
		t.Errorf("error: %+v", run.Error)
	}
	if len(run.Made) != 1 || len(run.Undone) != 1 || run.Undone[0].Object != `netns "jf1"` || !strings.HasSuffix(run.Undone[0].Pos, "jsonlate.star:1:10") {
		t.Errorf("made %+v, undone %+v", run.Made, run.Undone)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("left:\n%s\nwant:\n%s", after, before)
	}

	for _, c := range []struct {
		name, src, stage string
		code             int
		pos, message     string
	}{
		{"jsonearly.star", "netns(\"jf2\")\nfail(\"early\")\n", "plan", 1, "jsonearly.star:2:5", "fail: early"},
		{"jsonsyntax.star", "netns(\"jf3\"\n", "syntax", 2, "jsonsyntax.star:2:1", "got end of file, want ')'"},
		{"jsonundef.star", "netns(\"jf4\")\nnope()\n", "syntax", 2, "jsonundef.star:2:1", "undefined: nope"},
	} {
		r := nsrun(t, "--json", write(t, c.name, c.src))
		var run resultJSON
		decode(t, r, &run)
		if r.code != c.code || run.Stage != c.stage || run.State != "" || run.Made == nil || len(run.Made) != 0 {
			t.Errorf("%s: exit %d, %+v", c.name, r.code, run)
		}
		if run.Error == nil || run.Error.Message != c.message || !strings.HasSuffix(run.Error.Pos, c.pos) {
			t.Errorf("%s: error %+v, want %q at %s", c.name, run.Error, c.message, c.pos)
		}
	}
}

// ls --json and down --json reach a lab in a kept sandbox.
func TestJSONKeptSandbox(t *testing.T) {
	nstest.Kernel(t)
	if r := nsrun(t, "run", "--sandbox", "--keep", "-q", "--name", "jsonkept", "testdata/blue.star"); r.code != 0 {
		t.Fatalf("run --sandbox --keep: %+v", r)
	}
	t.Cleanup(func() { nsrun(t, "down", "jsonkept") })
	r := nsrun(t, "ls", "--json")
	var labs []labJSON
	decode(t, r, &labs)
	if len(labs) != 1 || labs[0].Lab != "jsonkept" || labs[0].State != "up" || labs[0].Sandbox == "" || labs[0].Changes == 0 {
		t.Fatalf("ls --json: %+v", r)
	}
	// The holder shown is the process that holds the sandbox: the first
	// started in it, and alive.
	if h := labs[0].Holder; h == 0 || !proc.Live(h) {
		t.Errorf("holder %d is no live process", h)
	} else if v, _ := proc.Env(h, sandbox.IDEnv); v != labs[0].Sandbox {
		t.Errorf("holder %d is in sandbox %q, not %q", h, v, labs[0].Sandbox)
	}
	r = nsrun(t, "down", "--json", "jsonkept")
	var downs []resultJSON
	decode(t, r, &downs)
	if r.code != 0 || len(downs) != 1 || downs[0].Lab != "jsonkept" || downs[0].State != "removed" || len(downs[0].Undone) == 0 {
		t.Errorf("down --json: %+v", r)
	}
	waitNoHolders(t, "/run/nsrun/.sandbox")
}
