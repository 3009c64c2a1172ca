package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/store"
)

// The shapes of `ls --json`, `run --json` and `down --json` (README,
// Commands). CI parses them: a field's name and meaning stay once
// published, lower_snake as in inspect --json and lab.json, and every list
// is [] when empty, never null.

// resultJSON is what `run --json` prints, and each element of `down --json`.
type resultJSON struct {
	Lab   string `json:"lab"`
	State string `json:"state"` // up, kept, incomplete, removed; "" if no lab was made (run) or it could not be taken down (down)
	// Stage is how far a run got: input, syntax, plan, claim (nothing
	// was changed before run), run. Only in run's.
	Stage  string       `json:"stage,omitempty"`
	Made   []changeJSON `json:"made,omitzero"` // only in run's
	Undone []changeJSON `json:"undone"`
	Left   []changeJSON `json:"left"`   // not undone: still recorded for `nsrun down`, unless the record is removed
	Failed []string     `json:"failed"` // why, each naming its object and the recipe's file:line:col
	Spared []string     `json:"spared"` // objects found in the place of the lab's, left alone
	// RecordError: the lab stays up (or kept), but its record could not
	// say so.
	RecordError *string    `json:"record_error"`
	Error       *errorJSON `json:"error"` // null on success
}

// changeJSON is one change of a lab.
type changeJSON struct {
	Op     string `json:"op"`     // the journal's operation: netns, link, up, master, addr, route, sysctl, proc, ...
	Object string `json:"object"` // as messages name it: `veth "veth0"`, `address 10.0.0.1/24 on "veth1" in netns "blue"`
	Pos    string `json:"pos"`    // the recipe's file:line:col that made it
}

// errorJSON is the error a run failed with, or why a lab could not be
// taken down.
type errorJSON struct {
	Message string `json:"message"`
	Pos     string `json:"pos"` // the recipe's file:line:col; "" where there is none
}

// labJSON is one lab of `ls --json`.
type labJSON struct {
	Lab     string `json:"lab"`
	ID      string `json:"id"`
	State   string `json:"state"` // running, up, kept, incomplete, unverified
	Changes int    `json:"changes"`
	Started string `json:"started"` // RFC 3339; "" if unknown (unverified)
	Recipe  string `json:"recipe"`
	Sandbox string `json:"sandbox"` // the id of the kept sandbox that holds it; "" on the machine
	Holder  int    `json:"holder"`  // the pid of the process that holds its sandbox (kill it to end the sandbox); 0 on the machine
	// A lab across machines: its machines (the coordinator's first) and
	// the one this is the part of.
	Machines []string `json:"machines,omitempty"`
	Machine  string   `json:"machine,omitempty"`
}

// runJSON renders a run's result.
func runJSON(r store.Result) resultJSON {
	j := undoJSON(r)
	j.Stage, j.Made = r.Stage, changeList(r.Made)
	return j
}

// undoJSON renders what a teardown did to a lab.
func undoJSON(r store.Result) resultJSON {
	j := resultJSON{
		Lab: r.Lab, State: r.State,
		Undone: changeList(r.Undone), Left: changeList(r.Left),
		Failed: errorList(r.Failed), Spared: errorList(r.Spared),
	}
	if r.RecordErr != nil {
		msg := r.RecordErr.Error()
		j.RecordError = &msg
	}
	if r.Err != nil {
		msg, pos := engine.ErrorAt(r.Err)
		j.Error = &errorJSON{Message: msg, Pos: pos}
	}
	return j
}

func changeList(steps []journal.Step) []changeJSON {
	out := make([]changeJSON, 0, len(steps))
	for _, s := range steps {
		out = append(out, changeJSON{Op: s.Op, Object: s.String(), Pos: s.Pos})
	}
	return out
}

func errorList(errs []error) []string {
	out := make([]string, 0, len(errs))
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

// lsEntry renders a lab of store.List.
func lsEntry(l store.Info, sandbox string) labJSON {
	started := ""
	if !l.Started.IsZero() {
		started = l.Started.Format(time.RFC3339)
	}
	return labJSON{Lab: l.Name, ID: l.ID, State: l.State, Changes: l.Steps, Started: started, Recipe: l.Recipe, Sandbox: sandbox,
		Machines: l.Machines, Machine: l.Machine}
}

// printJSON prints v on w as one indented JSON document.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
