package kernel

import "testing"

// wrapper is a kernel around another, as the lab store's claimer is.
type wrapper struct{ Kernel }

func (w wrapper) Unwrap() Kernel { return w.Kernel }

// natWrapper is a wrapper with NAT of its own.
type natWrapper struct{ wrapper }

func (natWrapper) NATTable(ns, family, table string) error            { return nil }
func (natWrapper) NATRule(ns, family, table string, r NATRule) error  { return nil }
func (natWrapper) NATRuleDel(ns, family, table, comment string) error { return nil }
func (natWrapper) NATDelTable(ns, family, table string) error         { return nil }

// As finds a capability in a kernel or in the kernels it wraps, the
// outermost first: a wrapper's own NAT, the real kernel's teardown
// shortcuts and paths beneath it.
func TestAs(t *testing.T) {
	nl := NewNetlink("/run/netns")
	f := natWrapper{wrapper{wrapper{nl}}}
	if g, ok := As[GroupDeleter](f); !ok || g != GroupDeleter(nl) {
		t.Errorf("As[GroupDeleter] = %v, %v", g, ok)
	}
	if _, ok := As[NetnsPrechecker](f); !ok {
		t.Errorf("no NetnsPrechecker through the wrappers")
	}
	if p, ok := As[Pather](f); !ok || p.Path("x") != "/run/netns/x" {
		t.Errorf("As[Pather] = %v, %v", p, ok)
	}
	if n, ok := As[NAT](f); !ok || n != NAT(f) {
		t.Errorf("As[NAT] = %v, %v; want the outer wrapper", n, ok)
	}
	rec := NewRecorder()
	if _, ok := As[Pather](wrapper{rec}); ok {
		t.Errorf("a recording kernel has paths")
	}
	if p, ok := As[Planner](wrapper{rec}); !ok || p != Planner(rec) {
		t.Errorf("As[Planner] = %v, %v", p, ok)
	}
}
