package kernel

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
)

// Placed is the kernel of one machine's part of a lab across machines:
// each request about an object of this machine's goes to Here, the real
// kernel; one about an object of another machine's goes to Away, a
// recording kernel that keeps the rest of the lab's model, so that the
// recipe runs the same on every machine and each makes only its own part.
// Of says whether an object (a namespace, and in the host namespace a
// link's name) is this machine's.
type Placed struct {
	Here Kernel
	Away *Recorder
	Of   func(ns, name string) bool
}

var (
	_ View            = (*Placed)(nil)
	_ NAT             = (*Placed)(nil)
	_ FDBer           = (*Placed)(nil)
	_ Ruler           = (*Placed)(nil)
	_ RuleLister      = (*Placed)(nil)
	_ Shaper          = (*Placed)(nil)
	_ Wrapper         = (*Placed)(nil)
	_ LinkLister      = (*Placed)(nil)
	_ NetnsIdentifier = (*Placed)(nil)
)

// Unwrap is the real kernel, for the capabilities Placed has not.
func (p *Placed) Unwrap() Kernel { return p.Here }

func (p *Placed) pick(ns, name string) Kernel {
	if p.Of(ns, name) {
		return p.Here
	}
	return p.Away
}

// capability returns T of the kernel an object's request goes to.
func capability[T any](p *Placed, ns, name string) (T, error) {
	t, ok := As[T](p.pick(ns, name))
	if !ok {
		var none T
		return none, errNoCapability
	}
	return t, nil
}

var errNoCapability = errors.New("the kernel cannot do this")

func (p *Placed) NetnsAdd(s NetnsSpec) (NetnsID, error) { return p.pick(s.Name, "").NetnsAdd(s) }
func (p *Placed) NetnsDel(name, tag string, id NetnsID) error {
	return p.pick(name, "").NetnsDel(name, tag, id)
}
func (p *Placed) NetnsExists(name string) (bool, error) { return p.pick(name, "").NetnsExists(name) }
func (p *Placed) LinkAdd(s LinkSpec) error              { return p.pick(s.NS, s.Name).LinkAdd(s) }
func (p *Placed) LinkGet(ns, name string) (LinkInfo, error) {
	return p.pick(ns, name).LinkGet(ns, name)
}
func (p *Placed) LinkDel(ns, name string, fp Fingerprint) error {
	return p.pick(ns, name).LinkDel(ns, name, fp)
}
func (p *Placed) LinkSetUp(ns, name string, up bool) error {
	return p.pick(ns, name).LinkSetUp(ns, name, up)
}
func (p *Placed) LinkSetMaster(ns, name, master string) error {
	return p.pick(ns, name).LinkSetMaster(ns, name, master)
}
func (p *Placed) LinkSetMTU(ns, name string, mtu int) error {
	return p.pick(ns, name).LinkSetMTU(ns, name, mtu)
}
func (p *Placed) LinkSetMAC(ns, name string, mac net.HardwareAddr) error {
	return p.pick(ns, name).LinkSetMAC(ns, name, mac)
}
func (p *Placed) LinkSetAlias(ns, name, alias string) error {
	return p.pick(ns, name).LinkSetAlias(ns, name, alias)
}
func (p *Placed) LinkSetHairpin(ns, name string, on bool) error {
	return p.pick(ns, name).LinkSetHairpin(ns, name, on)
}
func (p *Placed) LinkMove(ns, name, to string) error { return p.pick(ns, name).LinkMove(ns, name, to) }
func (p *Placed) AddrAdd(ns, dev string, a netip.Prefix) error {
	return p.pick(ns, dev).AddrAdd(ns, dev, a)
}
func (p *Placed) AddrDel(ns, dev string, a netip.Prefix) error {
	return p.pick(ns, dev).AddrDel(ns, dev, a)
}
func (p *Placed) RouteAdd(ns string, r Route) error     { return p.pick(ns, r.Dev).RouteAdd(ns, r) }
func (p *Placed) RouteDel(ns string, r Route) error     { return p.pick(ns, r.Dev).RouteDel(ns, r) }
func (p *Placed) RouteReplace(ns string, r Route) error { return p.pick(ns, r.Dev).RouteReplace(ns, r) }
func (p *Placed) SysctlGet(ns, key string) (string, error) {
	return p.pick(ns, "").SysctlGet(ns, key)
}
func (p *Placed) SysctlSet(ns, key, value string) error {
	return p.pick(ns, "").SysctlSet(ns, key, value)
}
func (p *Placed) Start(ns string, cmd *exec.Cmd) error { return p.pick(ns, "").Start(ns, cmd) }
func (p *Placed) Settle(ns string, links []NamedLink) error {
	return p.pick(ns, "").Settle(ns, links)
}

// Close closes both kernels.
func (p *Placed) Close() error {
	p.Away.Close()
	return p.Here.Close()
}

func (p *Placed) NetnsInode(name string) (uint64, error) {
	v, err := capability[View](p, name, "")
	if err != nil {
		return 0, err
	}
	return v.NetnsInode(name)
}

func (p *Placed) NetnsTag(name string) (string, error) {
	v, err := capability[View](p, name, "")
	if err != nil {
		return "", err
	}
	return v.NetnsTag(name)
}

func (p *Placed) NetnsIdentity(name string) (NetnsID, error) {
	v, err := capability[NetnsIdentifier](p, name, "")
	if err != nil {
		return NetnsID{}, err
	}
	return v.NetnsIdentity(name)
}

func (p *Placed) Links(ns string) ([]LinkInfo, error) {
	v, err := capability[LinkLister](p, ns, "")
	if err != nil {
		return nil, err
	}
	return v.Links(ns)
}

func (p *Placed) Addrs(ns string) ([]Addr, error) {
	v, err := capability[Observer](p, ns, "")
	if err != nil {
		return nil, err
	}
	return v.Addrs(ns)
}

func (p *Placed) Routes(ns string) ([]RouteInfo, error) {
	v, err := capability[Observer](p, ns, "")
	if err != nil {
		return nil, err
	}
	return v.Routes(ns)
}

func (p *Placed) Neighbors(ns string) ([]Neighbor, error) {
	v, err := capability[Observer](p, ns, "")
	if err != nil {
		return nil, err
	}
	return v.Neighbors(ns)
}

func (p *Placed) NATTable(ns, family, table string) error {
	v, err := capability[NAT](p, ns, "")
	if err != nil {
		return err
	}
	return v.NATTable(ns, family, table)
}

func (p *Placed) NATRule(ns, family, table string, r NATRule) error {
	v, err := capability[NAT](p, ns, "")
	if err != nil {
		return err
	}
	return v.NATRule(ns, family, table, r)
}

func (p *Placed) NATRuleDel(ns, family, table, comment string) error {
	v, err := capability[NAT](p, ns, "")
	if err != nil {
		return err
	}
	return v.NATRuleDel(ns, family, table, comment)
}

func (p *Placed) NATDelTable(ns, family, table string) error {
	v, err := capability[NAT](p, ns, "")
	if err != nil {
		return err
	}
	return v.NATDelTable(ns, family, table)
}

func (p *Placed) FDBAppend(ns, dev string, e FDBEntry) error {
	v, err := capability[FDBer](p, ns, dev)
	if err != nil {
		return err
	}
	return v.FDBAppend(ns, dev, e)
}

func (p *Placed) FDBDel(ns, dev string, e FDBEntry) error {
	v, err := capability[FDBer](p, ns, dev)
	if err != nil {
		return err
	}
	return v.FDBDel(ns, dev, e)
}

func (p *Placed) RuleAdd(ns string, r Rule) error {
	v, err := capability[Ruler](p, ns, "")
	if err != nil {
		return err
	}
	return v.RuleAdd(ns, r)
}

func (p *Placed) RuleDel(ns string, r Rule) error {
	v, err := capability[Ruler](p, ns, "")
	if err != nil {
		return err
	}
	return v.RuleDel(ns, r)
}

func (p *Placed) Rules(ns string) ([]Rule, error) {
	v, err := capability[RuleLister](p, ns, "")
	if err != nil {
		return nil, err
	}
	return v.Rules(ns)
}

func (p *Placed) SetShape(ns, dev string, s Shape) error {
	v, err := capability[Shaper](p, ns, dev)
	if err != nil {
		return err
	}
	return v.SetShape(ns, dev, s)
}

func (p *Placed) HasQdisc(kind string) (bool, error) {
	v, ok := As[Shaper](p.Here)
	if !ok {
		return false, errNoCapability
	}
	return v.HasQdisc(kind)
}

func (p *Placed) Shapes(ns string) (map[string]Shape, error) {
	v, err := capability[ShapeLister](p, ns, "")
	if err != nil {
		return nil, err
	}
	return v.Shapes(ns)
}
