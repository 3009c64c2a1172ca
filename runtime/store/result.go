package store

import (
	"fmt"

	"github.com/nsrun/nsrun/runtime/journal"
)

// A Result is what a run, a session's input or end, a recovery or a
// teardown did to a lab. The engine returns it and prints nothing of it;
// the command line renders it, as text or JSON, and picks the exit code.
type Result struct {
	Lab string
	// State is the lab's state after: LabUp, LabKept, LabIncomplete,
	// LabRemoved (its record is gone), LabRunning (a session goes on);
	// LabUnverified for a record nsrun did not write, which Recover
	// leaves alone; "" if no lab was made.
	State string
	Stage string // a run: how far it got (see StageInput); "" for the others
	Pid   int    // the run that made the lab (Recover: the one that died)

	Made   []journal.Step // the changes made, oldest first: by the run, by a session's input, or (Session.Close) by the whole session
	Undone []journal.Step // the changes undone, in the order the undo reached them (see Undo)
	Left   []journal.Step // the changes that could not be undone: recorded for `nsrun down` to try again, unless the record is removed
	Failed []error        // what went wrong in the undo, each naming its object and recipe position; then whatever else is left behind
	Spared []error        // objects found in the place of the lab's, and left alone (see UndoResult)
	// RecordErr says that the lab stays (up, or kept) but its record could
	// not say so: the next nsrun command will take it for a dead run's.
	RecordErr error
	Err       error // why the run, or the input, failed; nil if it succeeded
	// Reverted: Recover undid an apply that died, and the lab is up
	// again as it was before it.
	Reverted bool
}

// LabRemoved is a Result's State once the lab's record is removed: its
// objects are undone, or, for a damaged journal, as many as could be.
const LabRemoved = "removed"

// Settle records the lab's state as r's. An error recording it is, for an
// incomplete lab, one more thing left to do; for one that stays up or
// kept, r's RecordErr.
func (l *Lab) Settle(r *Result, state string) {
	r.State = state
	err := l.SetState(state)
	switch {
	case err == nil:
	case state == LabIncomplete:
		r.Failed = append(r.Failed, fmt.Errorf("recording the lab: %w", err))
	default:
		r.RecordErr = fmt.Errorf("recording the lab: %w", err)
	}
}

// RemoveInto removes the lab's record, as r says: a record that could not
// be removed is left behind.
func (l *Lab) RemoveInto(r *Result) {
	r.State = LabRemoved
	if err := l.Remove(); err != nil {
		r.Failed = append(r.Failed, err)
	}
}
