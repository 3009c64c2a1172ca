package cluster_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/nstest/cluster"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// ssh runs command on the machine called host from the coordinator, and
// returns its exit code and what it printed.
func ssh(t *testing.T, c *cluster.Cluster, host string, command ...string) (int, string, string) {
	t.Helper()
	args := append([]string{"-F", c.SSHConfig, host}, command...)
	return nstest.Run(t, c.Coordinator.Command("ssh", args...))
}

// mustSSH is ssh that fails t unless command succeeds, and returns its
// output.
func mustSSH(t *testing.T, c *cluster.Cluster, host string, command ...string) string {
	t.Helper()
	code, out, errs := ssh(t, c, host, command...)
	if code != 0 {
		t.Fatalf("ssh %s %s: exit %d: %s", host, strings.Join(command, " "), code, errs)
	}
	return out
}

// fakeNsrun writes a script that stands for nsrun and returns its path.
func fakeNsrun(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nsrun")
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho fake nsrun \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	nstest.Kernel(t)
	hostBin := listDir(t, "/usr/local/bin")
	c := cluster.Start(t, cluster.Options{Machines: 2, Nsrun: fakeNsrun(t), Without: []string{"m2"}})
	m1, m2 := c.Machine("m1"), c.Machine("m2")
	if c.Machine("coord") != c.Coordinator || len(c.Machines) != 2 || c.Machines[0] != m1 {
		t.Fatalf("machines: coordinator %+v, others %+v", c.Coordinator, c.Machines)
	}
	if fi, err := os.Stat(c.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the cluster's directory: %v, %v", fi, err)
	}

	t.Run("addresses", func(t *testing.T) {
		for _, m := range c.Machines {
			if out := mustSSH(t, c, m.Name, "ip", "-j", "-br", "addr"); !strings.Contains(out, `"`+m.Addr.String()+`"`) {
				t.Errorf("%s's addresses lack %s: %s", m.Name, m.Addr, out)
			}
		}
		if m1.Addr.String() != "10.250.0.2" || m2.Addr.String() != "10.250.0.3" || c.Coordinator.Addr.String() != "10.250.0.1" {
			t.Errorf("addresses: coord %s, m1 %s, m2 %s", c.Coordinator.Addr, m1.Addr, m2.Addr)
		}
	})

	t.Run("a machine of its own", func(t *testing.T) {
		if out := mustSSH(t, c, "m1", "hostname"); out != "m1\n" {
			t.Errorf("m1's hostname: %q", out)
		}
		if out := mustSSH(t, c, "m1", "ls", "/sys/class/net"); out != "lo\nul0\n" {
			t.Errorf("m1's /sys/class/net: %q", out)
		}
		// The first process of its PID namespace is its init.
		if out := mustSSH(t, c, "m1", "cat", "/proc/1/cmdline"); !strings.HasPrefix(out, "sh\x00-c\x00") {
			t.Errorf("m1's process 1: %q", out)
		}
		if out := mustSSH(t, c, "m1", "ls", "/run"); out != "netns\nnsrun\nsshd\n" {
			t.Errorf("m1's /run: %q", out)
		}
	})

	t.Run("nsrun", func(t *testing.T) {
		if out := mustSSH(t, c, "m1", "/usr/local/bin/nsrun", "ls"); out != "fake nsrun ls\n" {
			t.Errorf("m1's nsrun printed %q", out)
		}
		if _, out, _ := nstest.Run(t, c.Coordinator.Command("nsrun", "up")); out != "fake nsrun up\n" {
			t.Errorf("the coordinator's nsrun printed %q", out)
		}
		if code, out, errs := ssh(t, c, "m2", "/usr/local/bin/nsrun"); code == 0 {
			t.Errorf("m2 has an nsrun: it printed %q %q", out, errs)
		}
		// The host's /usr/local/bin is there too, as it is.
		want := sorted(append([]string{"nsrun"}, hostBin...))
		if got := sorted(strings.Fields(mustSSH(t, c, "m1", "ls", "-A", "/usr/local/bin"))); !slices.Equal(got, want) {
			t.Errorf("m1's /usr/local/bin: %v, want %v", got, want)
		}
		if got := listDir(t, "/usr/local/bin"); !slices.Equal(got, hostBin) {
			t.Errorf("the host's /usr/local/bin changed: %v, was %v", got, hostBin)
		}
	})

	t.Run("link", func(t *testing.T) {
		if err := m1.Link(false); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if code, _, _ := ssh(t, c, "m1", "true"); code == 0 {
			t.Errorf("ssh to m1 works with its link down")
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("ssh to m1 with its link down took %v to fail", d)
		}
		if err := m1.Link(true); err != nil {
			t.Fatal(err)
		}
		mustSSH(t, c, "m1", "true")
	})

	t.Run("bad host key", func(t *testing.T) {
		c.BadHostKey("m2")
		code, _, errs := ssh(t, c, "m2", "true")
		if code == 0 || !strings.Contains(errs, "REMOTE HOST IDENTIFICATION HAS CHANGED") && !strings.Contains(errs, "Host key verification failed") {
			t.Errorf("ssh to m2 with a bad host key: exit %d: %s", code, errs)
		}
		mustSSH(t, c, "m1", "true") // the others are known as they were
	})

	t.Run("close", func(t *testing.T) {
		pids := []int{c.Coordinator.Pid, m1.Pid, m2.Pid}
		c.Close()
		c.Close()
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process %d lives on: %v", pid, err)
			}
		}
		if left := processesMentioning(c.Dir); len(left) > 0 {
			t.Errorf("processes left: %s", strings.Join(left, "; "))
		}
		if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the cluster's directory is still there: %v", err)
		}
		if mounts, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mounts), c.Dir) {
			t.Errorf("mounts left (%v):\n%s", err, mounts)
		}
	})
}

// listDir returns the names in dir, sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return sorted(names)
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

// processesMentioning returns the command lines of the live processes whose
// command line mentions s.
func processesMentioning(s string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, path := range dirs {
		cmdline, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(cmdline), s) {
			found = append(found, path+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return found
}
