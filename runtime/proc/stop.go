package proc

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Running reports whether pid is still the process that started at start,
// and not a zombie.
func Running(pid int, start uint64) bool {
	s, err := ReadStat(pid)
	return err == nil && s.Start == start && !s.Zombie()
}

// StartTime returns a process's start time in clock ticks since boot, which
// together with its pid identifies it: a pid can be reused, the pair cannot.
func StartTime(pid int) (uint64, error) {
	s, err := ReadStat(pid)
	return s.Start, err
}

// StopGrace is how long a process group has to end after SIGTERM before it
// gets SIGKILL.
const StopGrace = 2 * time.Second

// Stop ends the process group led by pid, if pid is still the process
// that started at start: SIGTERM, a grace period, then SIGKILL.
func Stop(pid int, start uint64) error {
	if got, err := StartTime(pid); err != nil || got != start {
		// Gone, or the pid now belongs to someone else. Its group may
		// outlive it; only a group we can prove is ours is signalled.
		return nil
	}
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	if waitGroupGone(pid, StopGrace) {
		return nil
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	if waitGroupGone(pid, StopGrace) {
		return nil
	}
	return fmt.Errorf("process group %d did not end", pid)
}

func waitGroupGone(pgid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) || onlyZombies(pgid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// GroupLive reports whether a process of group pgid is alive: not a zombie,
// or a zombie whose other threads still run. (The kernel counts a zombie as
// a member, and an orphan's zombie waits for whoever reaps orphans — init,
// which may take its time — not for the group to stop.)
func GroupLive(pgid int) bool {
	members, live := group(pgid)
	return live > 0 || members == 0 && groupExists(pgid)
}

// onlyZombies reports whether the members of group pgid that /proc shows
// are all zombies, and there is at least one: what /proc does not show (it
// cannot be read, say) counts as alive.
func onlyZombies(pgid int) bool {
	members, live := group(pgid)
	return members > 0 && live == 0
}

func groupExists(pgid int) bool {
	return !errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

// group counts the processes of group pgid in /proc, and those alive.
func group(pgid int) (members, live int) {
	for _, pid := range Pids() {
		s, err := ReadStat(pid)
		if err != nil || s.Pgrp != pgid {
			continue
		}
		members++
		if !s.Zombie() || threads(pid) > 1 {
			live++
		}
	}
	return members, live
}

// threads counts a process's threads (a zombie leader's may run on).
func threads(pid int) int {
	entries, _ := os.ReadDir(path(pid, "task"))
	return len(entries)
}
