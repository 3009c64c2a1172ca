package proc

import (
	"os"
	"reflect"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A command name may hold spaces and parentheses: the fields start
	// after the last ')'.
	b := []byte("1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n")
	s, err := ParseStat(b)
	if err != nil || s.State != 'S' || s.Pgrp != 1234 || s.Start != 987654 || s.Zombie() {
		t.Errorf("ParseStat = %+v, %v", s, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 x S", "1 (x) SS 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) took it", bad)
		}
	}
}

func TestSelf(t *testing.T) {
	pid := os.Getppid() // this process is left out of Pids; its parent is not
	s, err := ReadStat(os.Getpid())
	if err != nil || s.Zombie() || s.Start == 0 {
		t.Errorf("ReadStat(self) = %+v, %v", s, err)
	}
	found := false
	for _, p := range Pids() {
		found = found || p == pid
		if p == os.Getpid() {
			t.Errorf("Pids lists this process")
		}
	}
	if !found {
		t.Errorf("Pids lacks the parent %d", pid)
	}
	if Netns(os.Getpid()) == 0 || Comm(os.Getpid()) == "" || len(Cmdline(os.Getpid())) == 0 {
		t.Errorf("Netns, Comm or Cmdline of self is empty")
	}
	if v, ok := Env(os.Getpid(), "PATH"); !ok || v == "" {
		if os.Getenv("PATH") != "" {
			t.Errorf("Env(self, PATH) = %q, %v", v, ok)
		}
	}
	if len(MountSources(os.Getpid(), "proc")) == 0 {
		t.Errorf("no proc mount in mountinfo")
	}
}

func TestParseMountSources(t *testing.T) {
	b := []byte(`22 28 0:21 / /sys rw,nosuid shared:7 - sysfs nsrun-lab:l/1@2.3 rw
23 28 0:5 / /proc rw - proc proc rw
24 28 0:22 / /mnt/a\040b rw master:1 - tmpfs my\040disk rw,size=10k
bad line
`)
	if got := parseMountSources(b, "sysfs"); !reflect.DeepEqual(got, []string{"nsrun-lab:l/1@2.3"}) {
		t.Errorf("sysfs: %q", got)
	}
	if got := parseMountSources(b, "tmpfs"); !reflect.DeepEqual(got, []string{"my disk"}) {
		t.Errorf("tmpfs: %q", got)
	}
}
