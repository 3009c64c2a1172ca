package runtime

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// Recover finishes the rollback of every lab whose run died (its lock is
// free and it is not up), with the same undo as rollback and `down`, and
// reports each to w. It runs at the start of every nsrun command.
func Recover(stateDir string, k kernel.Kernel, w io.Writer) (failed []error) {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !e.IsDir() || ValidLabName(e.Name()) != nil {
			continue
		}
		l, err := OpenLab(stateDir, e.Name())
		if err != nil {
			removeHalfMade(stateDir, e.Name())
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
		if err := l.reload(); err != nil || l.Info.State != LabRunning {
			l.Unlock() // up, kept or incomplete: for `nsrun down`
			continue
		}
		undone, errs := l.Down(k)
		fmt.Fprintf(w, "nsrun: recovered lab %q, left by a run that died (pid %d): undid %s\n", l.Info.Name, l.Info.Pid, plural(len(undone), "change"))
		for _, err := range errs {
			fmt.Fprintf(w, "  could not undo: %v\n", err)
		}
		failed = append(failed, errs...)
		l.Unlock()
	}
	return failed
}

// beforeLock, in tests, runs between Recover's first read of a lab's record
// and its attempt at the lab's lock.
var beforeLock func(lab string)

// removeHalfMade removes a lab directory without a record, left by a run
// that died while making it, unless a live run is making it now.
func removeHalfMade(stateDir, name string) {
	unlock, err := lockState(stateDir)
	if err != nil {
		return
	}
	defer unlock()
	dir := filepath.Join(stateDir, name)
	if _, err := os.Stat(filepath.Join(dir, "lab.json")); err == nil {
		return
	}
	os.RemoveAll(dir)
}

// killTagged ends every process that carries the lab tag in its
// environment (see ProcessTagEnv): SIGTERM, a grace period, SIGKILL.
func killTagged(tag string) error {
	pids := tagged(tag)
	if len(pids) == 0 {
		return nil
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(StopGrace)
	for len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		pids = tagged(tag)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(10 * time.Millisecond)
	if left := tagged(tag); len(left) > 0 {
		return fmt.Errorf("processes %v of lab %s did not end", left, tag)
	}
	return nil
}

// tagged lists the live processes (zombies excluded) carrying tag.
func tagged(tag string) []int {
	mark := []byte(ProcessTagEnv + "=" + tag + "\x00")
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, mark) {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}
