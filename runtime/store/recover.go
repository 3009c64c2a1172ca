package store

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/undo"
)

// Recover finishes the rollback of every lab whose run died (its lock is
// free and it is not up), with the same undo as rollback and `down`, and
// returns what it did to each (see Lab.Down), and, as results of their own
// whose Err says why, the records nsrun did not write (state
// LabUnverified), which it leaves alone. It runs at the start of every
// nsrun command.
func Recover(stateDir string, k kernel.Kernel) (recovered []Result) {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		l, err := openRecord(stateDir, e.Name())
		if err != nil {
			removeHalfMade(stateDir, e.Name())
			continue
		}
		if err := l.verify(); err != nil {
			recovered = append(recovered, Result{Lab: e.Name(), State: LabUnverified, Err: err})
			continue
		}
		if beforeLock != nil {
			beforeLock(l.Info.Name)
		}
		if l.TryLock() != nil {
			continue // live
		}
		// Read the record again now that the lock is ours: the run may
		// have finished (and left its lab up) since it was first read.
		if err := l.reload(); err == nil && l.verify() == nil && l.Info.State == LabApplying {
			recovered = append(recovered, l.Revert(k))
			l.Unlock()
			continue
		}
		if err := l.reload(); err != nil || l.verify() != nil || l.Info.State != LabRunning {
			l.Unlock() // up, kept or incomplete: for `nsrun down`
			continue
		}
		recovered = append(recovered, l.Down(k))
		l.Unlock()
	}
	return recovered
}

// beforeLock, in tests, runs between Recover's first read of a lab's record
// and its attempt at the lab's lock.
var beforeLock func(lab string)

// removeHalfMade removes a lab directory without a record, left by a run
// that died while making it (before its journal had a record), unless a
// live run is making it now. A directory whose record was deleted but
// whose journal holds changes is left for `nsrun gc`, which lists it and
// the objects tagged as its lab's.
func removeHalfMade(stateDir, name string) {
	unlock, err := LockState(stateDir)
	if err != nil {
		return
	}
	defer unlock()
	dir := filepath.Join(stateDir, name)
	if _, err := os.Stat(filepath.Join(dir, "lab.json")); err == nil {
		return
	}
	if fi, err := os.Stat(filepath.Join(dir, "journal")); err == nil && fi.Size() > 0 {
		return
	}
	os.RemoveAll(dir)
}

// KillLab ends every process of a lab, whatever it did to its
// environment, user, session or group: those in a namespace of the lab's
// (netns, by inode), which no process can leave without the privilege to
// enter another; those in a mount namespace that a command of the lab's
// made (by the mark on its /sys, see nsexec.SysSource), which is how a
// process the lab started in the host namespace is known; and those that
// carry the lab's tag in their environment (see ProcessTagEnv). SIGTERM, a
// grace period, SIGKILL.
func KillLab(tag string, netns map[uint64]bool) error {
	pids := ProcessesOf(tag, netns)
	if len(pids) == 0 {
		return nil
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(proc.StopGrace)
	for len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		pids = ProcessesOf(tag, netns)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// A killed process ends for certain, but not at once: on a loaded
	// machine its exit can take longer than a scheduler tick.
	left := pids
	for deadline := time.Now().Add(proc.StopGrace); len(left) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		left = ProcessesOf(tag, netns)
	}
	if len(left) > 0 {
		return fmt.Errorf("processes %v of lab %s did not end", left, tag)
	}
	return nil
}

// LabNetns returns the inodes of the namespaces steps made.
func LabNetns(steps []journal.Step) map[uint64]bool {
	inos := map[uint64]bool{}
	for _, s := range steps {
		if s.Op == journal.OpNetns && s.Ino != 0 && !s.Away { // another machine's inode means nothing here
			inos[s.Ino] = true
		}
	}
	return inos
}

// ProcessesOf lists the live processes (zombies excluded) of a lab: in
// one of its namespaces, in a mount namespace marked as its, or carrying
// tag. Processes of the nsrun itself are not among them.
func ProcessesOf(tag string, netns map[uint64]bool) []int {
	var pids []int
	marks := map[uint64][]string{}
	for _, pid := range proc.Pids() {
		ours := len(netns) > 0 && netns[proc.Netns(pid)]
		if !ours {
			ours = slices.Contains(processTags(pid, marks), tag)
		}
		if ours && proc.Live(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Revert undoes what an apply that died did to a lab (the journal's steps
// from Info.Mark on, newest first), and records it up again as it was: its
// processes that the apply did not start keep running.
func (l *Lab) Revert(k kernel.Kernel) Result {
	r := Result{Lab: l.Info.Name, State: l.Info.State, Pid: l.Info.Pid, Reverted: true}
	steps, err := journal.Read(l.journalPath())
	if err != nil {
		r.Failed = []error{err}
		return r
	}
	mark := min(l.Info.Mark, len(steps))
	u := undo.Steps(k, l.Tag(), steps[mark:])
	r.Undone, r.Left, r.Spared = u.Undone, u.Failed, u.Spared
	r.Failed = append(r.Failed, u.Errs...)
	kept := steps[:mark:mark]
	for i := range kept {
		if kept[i].Op == journal.OpNetns {
			if id, ok := u.Renewed[kept[i].Name]; ok {
				kept[i].Ino, kept[i].Mnt, kept[i].Pin = id.Ino, id.Mnt, id.Pin
			}
		}
	}
	if err := journal.WriteSteps(l.journalPath(), append(kept, u.Failed...)); err != nil {
		r.Failed = append(r.Failed, err)
	}
	Release(filepath.Dir(l.Dir), l.Info.Name, l.Info.Applied)
	l.Info.Claims = slices.DeleteFunc(l.Info.Claims, func(c string) bool { return slices.Contains(l.Info.Applied, c) })
	l.Info.Mark, l.Info.Applied = 0, nil
	if len(r.Failed) > 0 {
		l.Settle(&r, LabIncomplete)
		return r
	}
	l.Settle(&r, LabUp)
	return r
}
