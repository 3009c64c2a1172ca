package nsexec_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

func netnsOf(path string) string {
	l, _ := os.Readlink(path)
	return l
}

// NewNamed pins a new namespace, runs inside in it first, and leaves the
// calling goroutine's thread where it was; DeleteNamed removes only the
// namespace with the inode it was given.
func TestNewNamedAndDeleteNamed(t *testing.T) {
	nstest.Kernel(t)
	dir := nstest.NetnsDir
	self := netnsOf("/proc/thread-self/ns/net")
	var inside string
	ino, err := newNamed(dir, "nsexec-a", func() error {
		inside = netnsOf("/proc/thread-self/ns/net")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside == self || inside == "" {
		t.Errorf("inside ran in %q, the caller's namespace is %q", inside, self)
	}
	if got := netnsOf("/proc/thread-self/ns/net"); got != self {
		t.Errorf("the caller's thread moved to %q", got)
	}
	if !strings.Contains(nstest.Ip(t, "", "netns", "list"), "nsexec-a") {
		t.Errorf("ip netns list does not show it")
	}
	if _, err := newNamed(dir, "nsexec-a", nil); err == nil {
		t.Errorf("a second namespace of the same name was made")
	}
	if err := nsexec.DeleteNamed(dir, "nsexec-a", ino+1); err == nil {
		t.Errorf("deleted although the inode did not match")
	}
	if err := nsexec.DeleteNamed(dir, "nsexec-a", ino); err != nil {
		t.Fatal(err)
	}
	if err := nsexec.DeleteNamed(dir, "nsexec-a", ino); err != nil {
		t.Errorf("deleting what is gone: %v, want success", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nsexec-a")); !os.IsNotExist(err) {
		t.Errorf("the pin is still there: %v", err)
	}
}

// A failing inside leaves no pin behind.
func TestNewNamedInsideFails(t *testing.T) {
	nstest.Kernel(t)
	if _, err := newNamed(nstest.NetnsDir, "nsexec-b", func() error { return unix.EPERM }); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(filepath.Join(nstest.NetnsDir, "nsexec-b")); !os.IsNotExist(err) {
		t.Errorf("the pin is left: %v", err)
	}
}

// Do runs fn inside the namespace and returns to the caller's.
func TestDo(t *testing.T) {
	nstest.Kernel(t)
	ino, err := newNamed(nstest.NetnsDir, "nsexec-c", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nsexec.DeleteNamed(nstest.NetnsDir, "nsexec-c", ino)
	self := netnsOf("/proc/thread-self/ns/net")
	var inside string
	if err := nsexec.Do(filepath.Join(nstest.NetnsDir, "nsexec-c"), func() error {
		inside = netnsOf("/proc/thread-self/ns/net")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside == self {
		t.Errorf("fn ran in the caller's namespace")
	}
	if err := nsexec.Do(filepath.Join(nstest.NetnsDir, "nope"), func() error { return nil }); err == nil {
		t.Errorf("Do in a missing namespace succeeded")
	}
}

// newNamed is nsexec.NewNamed for a test that needs no descriptor.
func newNamed(dir, name string, inside func() error) (uint64, error) {
	ino, _, fd, err := nsexec.NewNamed(dir, name, inside)
	if err == nil {
		unix.Close(fd)
	}
	return ino, err
}
