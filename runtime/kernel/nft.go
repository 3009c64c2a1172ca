package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// NAT is implemented by kernels that can program a lab's own nftables table
// in a namespace. A lab's NAT lives in one table per namespace and family,
// with three base chains of type nat: prerouting (dstnat, -100), output
// (dstnat, -100, so that the namespace's own traffic to a floating address is
// translated too) and postrouting (srcnat, 100). Nothing outside that table
// is ever read or changed.
type NAT interface {
	// NATTable creates the table with its chains in one transaction. A
	// table of that name already there is an error wrapping os.ErrExist.
	NATTable(ns, family, table string) error
	// NATRule appends a rule to the chains its action belongs in.
	NATRule(ns, family, table string, r NATRule) error
	// NATRuleDel deletes the table's rules that carry comment; none left,
	// or no table, is success.
	NATRuleDel(ns, family, table, comment string) error
	// NATDelTable deletes the table and everything in it; already gone is
	// success.
	NATDelTable(ns, family, table string) error
}

// NAT actions.
const (
	Masquerade = "masquerade"
	SNAT       = "snat"
	DNAT       = "dnat"
)

// NATRule is one translation. Unset matches (an invalid prefix, an empty
// interface name) match everything.
type NATRule struct {
	Action   string       // Masquerade, SNAT or DNAT
	Src, Dst netip.Prefix // ip saddr / ip daddr
	In, Out  string       // iifname / oifname
	To       netip.Addr   // snat to / dnat to
	// Proto ("tcp", "udp", "sctp") and Port match the packet's transport
	// protocol and destination port (meta l4proto, th dport); ToPort is a
	// dnat's new destination port (dnat to To:ToPort).
	Proto   string `json:",omitempty"`
	Port    uint16 `json:",omitempty"`
	ToPort  uint16 `json:",omitempty"`
	Comment string // identifies the rule for its undo
}

// NATProtos are the transport protocols a NAT rule may match, by their
// numbers.
var NATProtos = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// chains are the base chains a rule goes in.
func (r NATRule) chains() []string {
	if r.Action != DNAT {
		return []string{"postrouting"}
	}
	if r.In != "" {
		return []string{"prerouting"}
	}
	return []string{"prerouting", "output"}
}

// String renders the rule as `nft add rule` takes it.
func (r NATRule) String() string {
	var b strings.Builder
	fam := "ip"
	if r.Src.Addr().Is6() || r.Dst.Addr().Is6() || r.To.Is6() {
		fam = "ip6"
	}
	if r.In != "" {
		fmt.Fprintf(&b, "iifname %q ", r.In)
	}
	if r.Out != "" {
		fmt.Fprintf(&b, "oifname %q ", r.Out)
	}
	if r.Src.IsValid() {
		fmt.Fprintf(&b, "%s saddr %s ", fam, r.Src)
	}
	if r.Dst.IsValid() {
		fmt.Fprintf(&b, "%s daddr %s ", fam, r.Dst)
	}
	if r.Proto != "" {
		fmt.Fprintf(&b, "meta l4proto %s ", r.Proto)
	}
	if r.Port != 0 {
		fmt.Fprintf(&b, "th dport %d ", r.Port)
	}
	b.WriteString(r.Action)
	if r.To.IsValid() {
		switch {
		case r.ToPort != 0 && r.To.Is6():
			fmt.Fprintf(&b, " to [%s]:%d", r.To, r.ToPort)
		case r.ToPort != 0:
			fmt.Fprintf(&b, " to %s:%d", r.To, r.ToPort)
		default:
			fmt.Fprintf(&b, " to %s", r.To)
		}
	}
	if r.Comment != "" {
		fmt.Fprintf(&b, " comment %q", r.Comment)
	}
	return b.String()
}

// natChain describes a base chain of the lab's table.
type natChain struct {
	name     string
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	spec     string // as nft writes it
}

// nft takes the names dstnat and srcnat only at the hooks they are named
// for (dstnat at prerouting, srcnat at postrouting): output's is a number.
var natChains = []natChain{
	{"prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, "type nat hook prerouting priority dstnat;"},
	{"output", nftables.ChainHookOutput, nftables.ChainPriorityNATDest, "type nat hook output priority -100;"},
	{"postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource, "type nat hook postrouting priority srcnat;"},
}

func nftFamily(family string) (nftables.TableFamily, error) {
	switch family {
	case "ip":
		return nftables.TableFamilyIPv4, nil
	case "ip6":
		return nftables.TableFamilyIPv6, nil
	}
	return 0, fmt.Errorf("nat family %q: want ip or ip6", family)
}

// nft opens an nftables connection to namespace ns; it is not cached: each
// Flush dials netlink afresh, inside the namespace.
func (k *Netlink) nft(ns string) (*nftables.Conn, error) {
	fd, err := k.fd(ns)
	if err != nil {
		return nil, err
	}
	return nftables.New(nftables.WithNetNSFd(int(fd)))
}

func (k *Netlink) NATTable(ns, family, table string) error {
	fam, err := nftFamily(family)
	if err != nil {
		return err
	}
	c, err := k.nft(ns)
	if err != nil {
		return err
	}
	t := c.CreateTable(&nftables.Table{Name: table, Family: fam})
	for _, ch := range natChains {
		c.AddChain(&nftables.Chain{Name: ch.name, Table: t, Type: nftables.ChainTypeNAT, Hooknum: ch.hook, Priority: ch.priority})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("creating nftables table %s %s in netns %q: %w", family, table, NSArg(ns), err)
	}
	return nil
}

func (k *Netlink) NATRule(ns, family, table string, r NATRule) error {
	fam, err := nftFamily(family)
	if err != nil {
		return err
	}
	exprs, err := natExprs(fam, r)
	if err != nil {
		return err
	}
	c, err := k.nft(ns)
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: table, Family: fam}
	for _, ch := range r.chains() {
		c.AddRule(&nftables.Rule{
			Table:    t,
			Chain:    &nftables.Chain{Name: ch, Table: t},
			Exprs:    exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment),
		})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("adding nftables rule %q to %s %s in netns %q: %w", r, family, table, NSArg(ns), err)
	}
	return nil
}

// natExprs compiles a rule as nft would: the matches, the target address
// loaded into register 1, then the nat statement.
func natExprs(fam nftables.TableFamily, r NATRule) ([]expr.Any, error) {
	var e []expr.Any
	if r.In != "" {
		e = append(e, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(r.In)})
	}
	if r.Out != "" {
		e = append(e, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(r.Out)})
	}
	// Offsets of the source and destination address in the IPv4 and IPv6
	// headers.
	src, dst, n := uint32(12), uint32(16), uint32(4)
	natFam := uint32(unix.NFPROTO_IPV4)
	if fam == nftables.TableFamilyIPv6 {
		src, dst, n = 8, 24, 16
		natFam = unix.NFPROTO_IPV6
	}
	for _, m := range []struct {
		p      netip.Prefix
		offset uint32
	}{{r.Src, src}, {r.Dst, dst}} {
		if !m.p.IsValid() {
			continue
		}
		if m.p.Addr().BitLen() != int(n)*8 {
			return nil, fmt.Errorf("%s is not an address of the table's family", m.p)
		}
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: m.offset, Len: n})
		if m.p.Bits() < m.p.Addr().BitLen() {
			mask := netipMask(m.p.Bits(), int(n))
			e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)})
		}
		e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: m.p.Masked().Addr().AsSlice()})
	}
	if r.Proto != "" {
		p, ok := NATProtos[r.Proto]
		if !ok {
			return nil, fmt.Errorf("no transport protocol %q", r.Proto)
		}
		e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}})
	}
	if r.Port != 0 {
		if r.Proto == "" {
			return nil, fmt.Errorf("a port needs its protocol")
		}
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, r.Port)})
	}
	switch r.Action {
	case Masquerade:
		e = append(e, &expr.Masq{})
	case SNAT, DNAT:
		if !r.To.IsValid() || r.To.BitLen() != int(n)*8 {
			return nil, fmt.Errorf("%s needs a target address of the table's family", r.Action)
		}
		typ := expr.NATTypeSourceNAT
		if r.Action == DNAT {
			typ = expr.NATTypeDestNAT
		}
		e = append(e, &expr.Immediate{Register: 1, Data: r.To.AsSlice()})
		nat := &expr.NAT{Type: typ, Family: natFam, RegAddrMin: 1, RegAddrMax: 1}
		if r.ToPort != 0 {
			if r.Proto == "" {
				return nil, fmt.Errorf("a port to translate to needs its protocol")
			}
			e = append(e, &expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, r.ToPort)})
			nat.RegProtoMin, nat.RegProtoMax, nat.Specified = 2, 2, true
		}
		e = append(e, nat)
	default:
		return nil, fmt.Errorf("unknown nat action %q", r.Action)
	}
	return e, nil
}

// ifname pads an interface name as the kernel compares it (IFNAMSIZ).
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func netipMask(bits, n int) []byte {
	m := make([]byte, n)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}

// gone reports whether err says that a namespace, table, chain or rule does
// not exist.
func gone(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist)
}

// table returns the lab's table, or nil if it is not there.
func (k *Netlink) table(c *nftables.Conn, fam nftables.TableFamily, name string) (*nftables.Table, error) {
	ts, err := c.ListTablesOfFamily(fam)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, nil
}

// existing returns a connection to ns's nftables and the table, or a nil
// table if it (or its namespace) is gone.
func (k *Netlink) existing(ns, family, table string) (*nftables.Conn, *nftables.Table, error) {
	fam, err := nftFamily(family)
	if err != nil {
		return nil, nil, err
	}
	c, err := k.nft(ns)
	if gone(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	t, err := k.table(c, fam, table)
	return c, t, err
}

func (k *Netlink) NATRuleDel(ns, family, table, comment string) error {
	c, t, err := k.existing(ns, family, table)
	if err != nil || t == nil {
		return err
	}
	for _, ch := range natChains {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch.name, Table: t})
		if gone(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("listing chain %s of %s %s in netns %q: %w", ch.name, family, table, NSArg(ns), err)
		}
		for _, r := range rules {
			if s, _ := userdata.GetString(r.UserData, userdata.TypeComment); s == comment {
				if err := c.DelRule(r); err != nil {
					return err
				}
			}
		}
	}
	if err := c.Flush(); err != nil && !gone(err) {
		return fmt.Errorf("deleting the rules %q of %s %s in netns %q: %w", comment, family, table, NSArg(ns), err)
	}
	return nil
}

func (k *Netlink) NATDelTable(ns, family, table string) error {
	c, t, err := k.existing(ns, family, table)
	if err != nil || t == nil {
		return err
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil && !gone(err) {
		return fmt.Errorf("deleting nftables table %s %s in netns %q: %w", family, table, NSArg(ns), err)
	}
	return nil
}
