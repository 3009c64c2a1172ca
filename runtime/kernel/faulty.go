package kernel

import (
	"fmt"
	"net"
	"net/netip"
)

// Faulty wraps a Kernel and makes its FailAt-th change (counting from 1)
// fail without being made, for rollback tests on the real kernel. Reads and
// undo-only operations (deletions) are passed through; Changes counts the
// changes attempted.
type Faulty struct {
	Kernel
	FailAt  int
	Changes int
}

// ErrInjected is the error of an injected failure.
var ErrInjected = fmt.Errorf("injected failure")

func (f *Faulty) fail() error {
	f.Changes++
	if f.Changes == f.FailAt {
		return fmt.Errorf("change %d: %w", f.Changes, ErrInjected)
	}
	return nil
}

func (f *Faulty) NetnsAdd(s NetnsSpec) (NetnsID, error) {
	if err := f.fail(); err != nil {
		return NetnsID{}, err
	}
	return f.Kernel.NetnsAdd(s)
}

func (f *Faulty) LinkAdd(s LinkSpec) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.LinkAdd(s)
}

func (f *Faulty) LinkSetUp(ns, name string, up bool) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.LinkSetUp(ns, name, up)
}

func (f *Faulty) LinkSetMaster(ns, name, master string) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.LinkSetMaster(ns, name, master)
}

func (f *Faulty) LinkSetMTU(ns, name string, mtu int) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.LinkSetMTU(ns, name, mtu)
}

func (f *Faulty) LinkSetMAC(ns, name string, mac net.HardwareAddr) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.LinkSetMAC(ns, name, mac)
}

func (f *Faulty) LinkSetHairpin(ns, name string, on bool) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.LinkSetHairpin(ns, name, on)
}

func (f *Faulty) LinkMove(ns, name, to string) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.LinkMove(ns, name, to)
}

func (f *Faulty) AddrAdd(ns, dev string, p netip.Prefix) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.AddrAdd(ns, dev, p)
}

func (f *Faulty) RouteAdd(ns string, r Route) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.RouteAdd(ns, r)
}

func (f *Faulty) SysctlSet(ns, key, value string) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Kernel.SysctlSet(ns, key, value)
}

// NATTable, NATRule and the deletions pass NAT through when the wrapped
// kernel has it (see NAT); Faulty itself then counts the changes.
func (f *Faulty) NATTable(ns, family, table string) error {
	n, ok := f.Kernel.(NAT)
	if !ok {
		return errNoNAT
	}
	if err := f.fail(); err != nil {
		return err
	}
	return n.NATTable(ns, family, table)
}

func (f *Faulty) NATRule(ns, family, table string, r NATRule) error {
	n, ok := f.Kernel.(NAT)
	if !ok {
		return errNoNAT
	}
	if err := f.fail(); err != nil {
		return err
	}
	return n.NATRule(ns, family, table, r)
}

func (f *Faulty) NATRuleDel(ns, family, table, comment string) error {
	n, ok := f.Kernel.(NAT)
	if !ok {
		return errNoNAT
	}
	return n.NATRuleDel(ns, family, table, comment)
}

func (f *Faulty) NATDelTable(ns, family, table string) error {
	n, ok := f.Kernel.(NAT)
	if !ok {
		return errNoNAT
	}
	return n.NATDelTable(ns, family, table)
}

// Unwrap returns the kernel Faulty wraps: the capabilities it passes
// through are found there (see As) — the real kernel's teardown shortcuts,
// so that rollback tests on a Faulty take the path real runs take.
func (f *Faulty) Unwrap() Kernel { return f.Kernel }

var errNoNAT = fmt.Errorf("this kernel cannot program nftables")
