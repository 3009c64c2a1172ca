package probe_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// A namespace is deleted by a process that did not make it (as `nsrun
// down` does) when its pin is the lab's own mount; one pinned under its
// name by someone else since is left alone.
func TestNetnsDelByPin(t *testing.T) {
	nstest.Kernel(t)
	maker := kernel.NewNetlink(nstest.NetnsDir)
	defer maker.Close()
	const tag = "nsrun:t"
	add := func(name string) kernel.NetnsID {
		t.Helper()
		id, err := maker.NetnsAdd(kernel.NetnsSpec{Name: name, Tag: tag})
		if err != nil {
			t.Fatal(err)
		}
		if id.Mnt == 0 {
			t.Skip("the kernel gives no unique mount id (statx STATX_MNT_ID_UNIQUE)")
		}
		return id
	}
	listed := func(name string) bool {
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == name {
				return true
			}
		}
		return false
	}
	own, stranger := add("pd-own"), add("pd-str")
	maker.Close()

	down := kernel.NewNetlink(nstest.NetnsDir)
	defer down.Close()
	if err := down.NetnsDel("pd-own", tag, own); err != nil || listed("pd-own") {
		t.Errorf("the lab's namespace: %v; still listed: %v", err, listed("pd-own"))
	}

	// Gone, and pinned again by someone else: another mount, another
	// namespace, the same name.
	if out, err := exec.Command("sh", "-c", "ip netns del pd-str && ip netns add pd-str").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", "pd-str").Run()
	if err := down.NetnsDel("pd-str", tag, stranger); err == nil || !listed("pd-str") {
		t.Errorf("someone else's namespace under the lab's name: %v; still listed: %v", err, listed("pd-str"))
	}
}
