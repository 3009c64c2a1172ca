package proc

import (
	"os/exec"
	"syscall"
	"testing"
)

// A group whose members have all ended is stopped, though a zombie is
// still in it: its parent (here, this test, which reaps it only at the end)
// may take its time. The kernel counts the zombie as a member; Stop must
// not wait out the grace period, and SIGKILL, for it.
func TestStopGroupOfZombies(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	start, err := StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := Stop(cmd.Process.Pid, start); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if s, err := ReadStat(cmd.Process.Pid); err != nil || !s.Zombie() || s.Pgrp != cmd.Process.Pid {
		t.Errorf("the stopped leader, not yet reaped: %+v, %v; want a zombie in its own group", s, err)
	}
}
