package store

import (
	"testing"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// Recovery decides on the record as it is once it holds the lab's lock: a
// run that finishes between recovery's first read (state running) and its
// lock (free once the run exits) leaves its lab up, and it stays up.
func TestRecoverRereadsUnderLock(t *testing.T) {
	state := t.TempDir()
	unlock, _ := LockState(state)
	lab, j, err := Create(state, Info{Name: "a"})
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	beforeLock = func(string) {
		lab.SetState(LabUp) // the run finishes...
		lab.Unlock()        // ...and exits
	}
	defer func() { beforeLock = nil }()
	for _, r := range Recover(state, kernel.NewRecorder()) {
		if len(r.Failed) != 0 {
			t.Fatal(r.Failed)
		}
	}
	if _, err := Open(state, "a"); err != nil {
		t.Errorf("recover removed a lab that is up: %v", err)
	}
}
