package kernel

import "testing"

// As finds a capability in a kernel or in the kernels it wraps, the
// outermost first: a Faulty's own NAT (which injects failures), the real
// kernel's teardown shortcuts and paths beneath it.
func TestAs(t *testing.T) {
	nl := NewNetlink("/run/netns")
	f := &Faulty{Kernel: &Faulty{Kernel: nl}}
	if g, ok := As[GroupDeleter](f); !ok || g != GroupDeleter(nl) {
		t.Errorf("As[GroupDeleter] = %v, %v", g, ok)
	}
	if _, ok := As[NetnsPrechecker](f); !ok {
		t.Errorf("no NetnsPrechecker through Faulty")
	}
	if p, ok := As[Pather](f); !ok || p.Path("x") != "/run/netns/x" {
		t.Errorf("As[Pather] = %v, %v", p, ok)
	}
	if n, ok := As[NAT](f); !ok || n != NAT(f) {
		t.Errorf("As[NAT] = %v, %v; want the outer Faulty", n, ok)
	}
	rec := NewRecorder()
	if _, ok := As[Pather](&Faulty{Kernel: rec}); ok {
		t.Errorf("a recording kernel has paths")
	}
	if p, ok := As[Planner](&Faulty{Kernel: rec}); !ok || p != Planner(rec) {
		t.Errorf("As[Planner] = %v, %v", p, ok)
	}
}
