package builtins_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// Values of the same namespace or link are equal, and find each other in a
// dict; other comparisons are errors.
func TestNetnsAndLinkEquality(t *testing.T) {
	out, _, err := runSrc(t, kernel.NewRecorder(), "eq.star", `
n = netns("a")
m = netns("b")
x, y = veth("x0", "x1", peer_netns = n)
print(host() == host(), host() in {host(): 1}, n == n.link("lo").netns, n != m)
print(x == x, x == y, y == x.peer, x in {x: 1}, y in [x])
`)
	if err != nil {
		t.Fatal(err)
	}
	if want := "True True True True\nTrue False True True False\n"; out != want {
		t.Errorf("printed\n%s\nwant\n%s", out, want)
	}
	if _, _, err := runSrc(t, kernel.NewRecorder(), "lt.star", "host() < host()\n"); err == nil || !strings.Contains(err.Error(), "netns < netns not implemented") {
		t.Errorf("host() < host(): %v", err)
	}
}

// lookupFails is a kernel whose link lookups fail for another reason than
// the link's absence.
type lookupFails struct{ *kernel.Recorder }

func (lookupFails) LinkGet(ns, name string) (kernel.LinkInfo, error) {
	return kernel.LinkInfo{}, errors.New("netlink: no buffer space")
}

// A move whose check for a same-named link in the destination fails is not
// made: the check's failure is not taken for the name being free.
func TestMoveLookupFails(t *testing.T) {
	_, _, err := runSrc(t, lookupFails{kernel.NewRecorder()}, "mv.star", `n = netns("a")
x, y = veth("x0", "x1")
y.move(n)
`)
	if err == nil || !strings.Contains(err.Error(), "no buffer space") {
		t.Errorf("move: %v", err)
	}
}
