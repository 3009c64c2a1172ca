package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A Ruler programs a namespace's routing policy: the rules that choose the
// table a packet's route is looked up in.
type Ruler interface {
	// RuleAdd adds r, marked as nsrun's (protocol RouteProtocol).
	RuleAdd(ns string, r Rule) error
	// RuleDel deletes the rule of nsrun's that is r; none is success.
	RuleDel(ns string, r Rule) error
}

// A RuleLister reads the rules nsrun made in a namespace (those of its
// protocol), in the kernel's order.
type RuleLister interface {
	Rules(ns string) ([]Rule, error)
}

var (
	_ Ruler      = (*Netlink)(nil)
	_ Ruler      = (*Recorder)(nil)
	_ RuleLister = (*Netlink)(nil)
	_ RuleLister = (*Recorder)(nil)
)

// Rule is a policy routing rule: packets it matches are routed by Table.
// An unset match (an invalid prefix, an empty name) matches everything.
type Rule struct {
	Family   int          // 4 or 6
	Src, Dst netip.Prefix // from / to
	IIF, OIF string       // the link a packet came in by, or is sent out of (a socket bound to it)
	Table    int
	// Priority orders the rules, lowest first; 0 lets the kernel choose
	// (just before the first rule it has, main's 32766 on a new
	// namespace).
	Priority int `json:",omitempty"`
}

// String renders the rule as `ip rule add` takes it (for IPv6's, after
// `ip -6`).
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString("from ")
	b.WriteString(prefixOrAll(r.Src))
	if r.Dst.IsValid() {
		b.WriteString(" to " + r.Dst.String())
	}
	if r.IIF != "" {
		b.WriteString(" iif " + r.IIF)
	}
	if r.OIF != "" {
		b.WriteString(" oif " + r.OIF)
	}
	fmt.Fprintf(&b, " lookup %d", r.Table)
	if r.Priority != 0 {
		fmt.Fprintf(&b, " pref %d", r.Priority)
	}
	return b.String()
}

func prefixOrAll(p netip.Prefix) string {
	if !p.IsValid() {
		return "all"
	}
	return p.String()
}

// nlRule is r as the library has it.
func nlRule(r Rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = unix.AF_INET
	if r.Family == 6 {
		nr.Family = unix.AF_INET6
	}
	ipnet := func(p netip.Prefix) *net.IPNet {
		if !p.IsValid() {
			return nil
		}
		return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	nr.Src, nr.Dst = ipnet(r.Src), ipnet(r.Dst)
	nr.IifName, nr.OifName = r.IIF, r.OIF
	nr.Table = r.Table
	if r.Priority != 0 {
		nr.Priority = r.Priority
	}
	nr.Protocol = RouteProtocol
	return nr
}

// RuleAdd adds r.
//
// Equivalent to: ip -n $ns rule add $r protocol 78
func (k *Netlink) RuleAdd(ns string, r Rule) error {
	h, err := k.h(ns)
	if err != nil {
		return err
	}
	return h.RuleAdd(nlRule(r))
}

// RuleDel deletes r, if it is there and nsrun's: the kernel matches the
// protocol given.
//
// Equivalent to: ip -n $ns rule del $r protocol 78
func (k *Netlink) RuleDel(ns string, r Rule) error {
	h, err := k.h(ns)
	if errors.Is(err, ErrNotFound) {
		return nil // gone with its namespace
	}
	if err != nil {
		return err
	}
	if err := h.RuleDel(nlRule(r)); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// Rules lists the rules of nsrun's protocol, IPv4's then IPv6's.
//
// Equivalent to: ip -n $ns rule show protocol 78; ip -n $ns -6 rule show protocol 78
func (k *Netlink) Rules(ns string) ([]Rule, error) {
	h, err := k.h(ns)
	if err != nil {
		return nil, err
	}
	var out []Rule
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := dump("rules", ns, func() ([]netlink.Rule, error) { return h.RuleList(fam) })
		if err != nil {
			return nil, err
		}
		for _, nr := range rules {
			if nr.Protocol != RouteProtocol {
				continue
			}
			r := Rule{Family: 4, Table: nr.Table, Priority: nr.Priority, IIF: nr.IifName, OIF: nr.OifName}
			if fam == netlink.FAMILY_V6 {
				r.Family = 6
			}
			r.Src, r.Dst = prefixOf(nr.Src), prefixOf(nr.Dst)
			out = append(out, r)
		}
	}
	return out, nil
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits)
}

// Rules lists the rules the plan added.
func (r *Recorder) Rules(ns string) ([]Rule, error) {
	if err := r.hasNS(ns); err != nil {
		return nil, err
	}
	return slices.Clone(r.rules[ns]), nil
}

func (r *Recorder) RuleAdd(ns string, rule Rule) error {
	if err := r.hasNS(ns); err != nil {
		return err
	}
	if r.rules == nil {
		r.rules = map[string][]Rule{}
	}
	r.rules[ns] = append(r.rules[ns], rule)
	return r.change("%s%s rule add %s protocol %d", ipn(ns), family6(rule.Family), rule, RouteProtocol)
}

func (r *Recorder) RuleDel(ns string, rule Rule) error {
	if r.hasNS(ns) != nil {
		return nil
	}
	r.rules[ns] = slices.DeleteFunc(r.rules[ns], func(have Rule) bool { return have == rule })
	return r.change("%s%s rule del %s protocol %d", ipn(ns), family6(rule.Family), rule, RouteProtocol)
}

func family6(family int) string {
	if family == 6 {
		return " -6"
	}
	return ""
}
