package kernel

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// NetnsSysctl finds a setting of the whole machine by a look at a scratch
// namespace, and leaves every thread of the process where it was: the
// process's own namespace (/proc/self/ns/net, its main thread's, which the
// host's links are moved to) above all. Many looks, so that one lands on the
// main thread.
func TestNetnsSysctlLeavesThreadsHome(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a scratch namespace")
	}
	home := netnsOfThreads(t)
	for i := 0; i < 200; i++ {
		k := NewNetlink(t.TempDir())
		err := k.NetnsSysctl("net.core.rmem_max")
		if _, inInit := os.Stat("/proc/sys/net/core/rmem_max"); inInit == nil && i == 0 {
			t.Logf("net.core.rmem_max: %v", err)
		}
		if err != nil && !errors.Is(err, fs.ErrPermission) {
			t.Fatal(err)
		}
		if err := k.NetnsSysctl("net.ipv4.ip_forward"); err != nil {
			t.Errorf("net.ipv4.ip_forward, a namespace's own: %v", err)
		}
		k.Close()
	}
	if now := netnsOfThreads(t); len(now) != 1 || now[0] != home[0] {
		t.Errorf("the threads' namespaces: %v, want all in %v", now, home)
	}
}

// netnsOfThreads lists the distinct network namespaces of the process's
// threads, the process's own first.
func netnsOfThreads(t *testing.T) []string {
	t.Helper()
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	out := []string{self}
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, p := range tasks {
		if l, err := os.Readlink(p); err == nil && l != self {
			out = append(out, l)
		}
	}
	return out
}
