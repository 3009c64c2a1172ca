package builtins

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/undo"
)

// The nat module programs NAT in a namespace of the lab through nftables.
// Each lab has its own table per namespace and family, "nsrun-<lab>", made on
// the first nat call there with the base chains prerouting (dstnat), output
// (dstnat) and postrouting (srcnat); each call appends rules to it. Nothing
// outside that table is read or changed, and NAT is refused in host(): the
// machine's firewall is never touched. Forwarding is not switched on behind
// the recipe's back: a router needs ns.sysctl("net.ipv4.ip_forward", "1").
var natModule = &starlarkstruct.Module{
	Name: "nat",
	Members: starlark.StringDict{
		"dnat":       starlark.NewBuiltin("nat.dnat", natDNAT),
		"floating":   starlark.NewBuiltin("nat.floating", natFloating),
		"masquerade": starlark.NewBuiltin("nat.masquerade", natMasquerade),
		"snat":       starlark.NewBuiltin("nat.snat", natSNAT),
	},
}

// Journal operations: the lab's table, and one rule (or the pair of rules a
// dnat makes) identified by its comment. A whole run's rollback deletes the
// namespace and with it both; a REPL input rolled back alone deletes just the
// rules it added, and the table if it made it.
const (
	opNftTable = "nftable" // Name: table, Kind: family
	opNftRule  = "nftrule" // Name: table, Kind: family, Alias: the rules' comment, NAT: the rule
	// Their removals (ns.delete() of a namespace with NAT), undone by
	// adding them again.
	opNftRuleDel  = "nftrule_del"
	opNftTableDel = "nftable_del"
)

// The runtime undoes the nat operations in any journal it replays (down and
// recover too, where no recipe runs): their undo is registered at start-up,
// as undo.Register asks; it is the runtime's table, not the recipe's. Each
// finds the lab's table and rules by their names and comments, so an
// intent is undone too (an apply killed midway leaves the namespace up).
func init() {
	undo.RegisterTagged(opNftTable, func(k kernel.Kernel, s journal.Step) error {
		nk, ok := k.(kernel.NAT)
		if !ok {
			return fmt.Errorf("this kernel cannot program nftables")
		}
		return nk.NATDelTable(s.NS, s.Kind, s.Name)
	})
	undo.RegisterTagged(opNftRule, func(k kernel.Kernel, s journal.Step) error {
		nk, ok := k.(kernel.NAT)
		if !ok {
			return fmt.Errorf("this kernel cannot program nftables")
		}
		return nk.NATRuleDel(s.NS, s.Kind, s.Name, s.Alias)
	})
	undo.RegisterTagged(opNftTableDel, func(k kernel.Kernel, s journal.Step) error {
		nk, ok := k.(kernel.NAT)
		if !ok {
			return fmt.Errorf("this kernel cannot program nftables")
		}
		if err := nk.NATTable(s.NS, s.Kind, s.Name); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		return nil
	})
	undo.RegisterTagged(opNftRuleDel, func(k kernel.Kernel, s journal.Step) error {
		nk, ok := k.(kernel.NAT)
		if !ok {
			return fmt.Errorf("this kernel cannot program nftables")
		}
		if s.NAT == nil {
			return nil // the removal never got as far as recording it
		}
		// Idempotent: a copy an earlier try added goes first.
		if err := nk.NATRuleDel(s.NS, s.Kind, s.Name, s.Alias); err != nil {
			return err
		}
		return nk.NATRule(s.NS, s.Kind, s.Name, *s.NAT)
	})
}

// removeNAT removes the lab's NAT in namespace ns, each change undoable:
// its rules, newest first (their undo adds them back in their order), then
// its tables.
func removeNAT(thread *starlark.Thread, b *starlark.Builtin, rt *engine.Runtime, ns string) error {
	var rules, tables []journal.Step
	for _, s := range rt.Steps() {
		if s.NS != ns {
			continue
		}
		switch s.Op {
		case opNftRule:
			rules = append(rules, s)
		case opNftTable:
			tables = append(tables, s)
		case opNftRuleDel:
			rules = slices.DeleteFunc(rules, func(r journal.Step) bool { return r.Alias == s.Alias && r.Name == s.Name })
		case opNftTableDel:
			tables = slices.DeleteFunc(tables, func(t journal.Step) bool { return t.Name == s.Name && t.Kind == s.Kind })
			rules = slices.DeleteFunc(rules, func(r journal.Step) bool { return r.Name == s.Name && r.Kind == s.Kind })
		}
	}
	for _, r := range slices.Backward(rules) {
		if r.NAT == nil {
			return fmt.Errorf("%s: NAT rule %q in netns %q was recorded by an older nsrun, without what its removal's undo needs", b.Name(), r.Alias, kernel.NSArg(ns))
		}
	}
	for _, r := range slices.Backward(rules) {
		if err := natRemove(thread, b, rt, r); err != nil {
			return err
		}
	}
	for _, t := range slices.Backward(tables) {
		if err := natTableRemove(thread, b, rt, t); err != nil {
			return err
		}
	}
	return nil
}

// natCommentTaken reports whether a rule of the lab's in table carries
// comment (added, and not removed since).
func natCommentTaken(rt *engine.Runtime, ns, table, family, comment string) bool {
	taken := false
	for _, s := range rt.Journal.Steps() {
		if s.NS == ns && s.Name == table && s.Kind == family && s.Alias == comment {
			taken = s.Op == opNftRule || taken && s.Op != opNftRuleDel
		}
	}
	return taken
}

// natRemove removes the lab's NAT rule r (its step), undoably.
func natRemove(thread *starlark.Thread, b *starlark.Builtin, rt *engine.Runtime, r journal.Step) error {
	k, err := rt.Acting()
	if err != nil {
		return err
	}
	nk, ok := k.(kernel.NAT)
	if !ok {
		return fmt.Errorf("%s: this kernel cannot program nftables", b.Name())
	}
	ns := r.NS
	step := journal.Step{Op: opNftRuleDel, NS: ns, Name: r.Name, Kind: r.Kind, Alias: r.Alias, NAT: r.NAT}
	w := says("%s: removing NAT rule %q in netns %q", b.Name(), r.NAT, kernel.NSArg(ns))
	return now(thread, rt, step, w, func(kernel.Kernel, *journal.Step) error { return nk.NATRuleDel(ns, r.Kind, r.Name, r.Alias) })
}

// natTableRemove removes the lab's NAT table t (its step), undoably.
func natTableRemove(thread *starlark.Thread, b *starlark.Builtin, rt *engine.Runtime, t journal.Step) error {
	k, err := rt.Acting()
	if err != nil {
		return err
	}
	nk, ok := k.(kernel.NAT)
	if !ok {
		return fmt.Errorf("%s: this kernel cannot program nftables", b.Name())
	}
	ns := t.NS
	step := journal.Step{Op: opNftTableDel, NS: ns, Name: t.Name, Kind: t.Kind}
	w := says("%s: removing nftables table %s %s in netns %q", b.Name(), t.Kind, t.Name, kernel.NSArg(ns))
	return now(thread, rt, step, w, func(kernel.Kernel, *journal.Step) error { return nk.NATDelTable(ns, t.Kind, t.Name) })
}

// nat.masquerade(netns, out, src=None) rewrites the source of traffic from
// src (any, if None) leaving through link out to out's address of the moment.
//
// Equivalent to: ip netns exec $netns nft add rule ip nsrun-$lab postrouting oifname $out ip saddr $src masquerade
func natMasquerade(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var out starlark.Value
	var src natPrefix
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &ns, "out", &out, "src?", &src); err != nil {
		return nil, err
	}
	r := kernel.NATRule{Action: kernel.Masquerade, Src: netip.Prefix(src)}
	return natApply(thread, b, ns, starlark.None, out, r)
}

// nat.snat(netns, src, to, out=None, proto=None, port=None) rewrites the
// source of traffic from src to the fixed address to, for traffic leaving
// through out if given, and only for proto ("tcp", "udp", "sctp") to
// destination port port if given (a port alone is TCP's).
//
// Equivalent to: ip netns exec $netns nft add rule ip nsrun-$lab postrouting [oifname $out] ip saddr $src
// [meta l4proto $proto] [th dport $port] snat to $to
func natSNAT(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var src natPrefix
	var to ipAddr
	var out starlark.Value = starlark.None
	var proto string
	var port natPort
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &ns, "src", &src, "to", &to, "out?", &out, "proto?", &proto, "port?", &port); err != nil {
		return nil, err
	}
	r := kernel.NATRule{Action: kernel.SNAT, Src: netip.Prefix(src), To: netip.Addr(to), Port: uint16(port)}
	if err := natProto(b, &r, proto); err != nil {
		return nil, err
	}
	return natApply(thread, b, ns, starlark.None, out, r)
}

// nat.dnat(netns, dst, to, proto=None, port=None, to_port=None, in_=None)
// rewrites the destination of traffic to dst into to: for traffic
// arriving through in_ if given, otherwise for all traffic, the
// namespace's own included. With port, only traffic of proto ("tcp",
// "udp", "sctp"; TCP if not given) to that destination port is; to_port
// rewrites its port too: port publishing, as Docker's -p 5000:80 and
// Neutron's port forwarding do.
//
// Equivalent to: ip netns exec $netns nft add rule ip nsrun-$lab prerouting [iifname $in_] ip daddr $dst
// [meta l4proto $proto th dport $port] dnat to $to[:$to_port] (and, without in_, the same rule in the output chain)
func natDNAT(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var dst, to ipAddr
	var proto string
	var port, toPort natPort
	var in starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &ns, "dst", &dst, "to", &to,
		"proto?", &proto, "port?", &port, "to_port?", &toPort, "in_?", &in); err != nil {
		return nil, err
	}
	if !netip.Addr(dst).IsValid() {
		return nil, fmt.Errorf("%s: for parameter dst: an address is required", b.Name())
	}
	r := kernel.NATRule{Action: kernel.DNAT, Dst: hostPrefix(netip.Addr(dst)), To: netip.Addr(to), Port: uint16(port), ToPort: uint16(toPort)}
	if err := natProto(b, &r, proto); err != nil {
		return nil, err
	}
	return natApply(thread, b, ns, in, starlark.None, r)
}

// natProto sets a rule's protocol: proto, or TCP for a rule with a port
// and no protocol, as Docker's port publishing has it.
func natProto(b *starlark.Builtin, r *kernel.NATRule, proto string) error {
	switch {
	case proto == "" && (r.Port != 0 || r.ToPort != 0):
		proto = "tcp"
	case proto == "":
		return nil
	}
	if _, ok := kernel.NATProtos[proto]; !ok {
		return fmt.Errorf("%s: for parameter proto: %q is not a protocol with ports (tcp, udp, sctp)", b.Name(), proto)
	}
	r.Proto = proto
	return nil
}

// natPort is a TCP, UDP or SCTP port: 1 to 65535.
type natPort uint16

func (p *natPort) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	i, err := starlark.AsInt32(v)
	if err != nil {
		return fmt.Errorf("got %s, want a port number", v.Type())
	}
	if i < 1 || i > 65535 {
		return fmt.Errorf("%d is not a port (1 to 65535)", i)
	}
	*p = natPort(i)
	return nil
}

// nat.floating(netns, floating, fixed) makes floating a 1:1 alias of fixed,
// as Neutron's L3 agent does for a floating IP in its qrouter namespace:
// traffic to floating goes to fixed (dnat, including the router's own), and
// traffic from fixed leaves as floating (snat). The floating address itself
// must be on the router's external link for its neighbours to reach it.
//
// Equivalent to:
//
//	ip netns exec $netns nft add rule ip nsrun-$lab prerouting ip daddr $floating dnat to $fixed
//	ip netns exec $netns nft add rule ip nsrun-$lab output ip daddr $floating dnat to $fixed
//	ip netns exec $netns nft add rule ip nsrun-$lab postrouting ip saddr $fixed snat to $floating
func natFloating(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var floating, fixed ipAddr
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &ns, "floating", &floating, "fixed", &fixed); err != nil {
		return nil, err
	}
	fl, fx := netip.Addr(floating), netip.Addr(fixed)
	switch {
	case !fl.IsValid():
		return nil, fmt.Errorf("%s: for parameter floating: an address is required", b.Name())
	case !fx.IsValid():
		return nil, fmt.Errorf("%s: for parameter fixed: an address is required", b.Name())
	case fl == fx:
		return nil, fmt.Errorf("%s: floating and fixed are both %s", b.Name(), fl)
	}
	d := kernel.NATRule{Action: kernel.DNAT, Dst: hostPrefix(fl), To: fx}
	if _, err := natApply(thread, b, ns, starlark.None, starlark.None, d); err != nil {
		return nil, err
	}
	s := kernel.NATRule{Action: kernel.SNAT, Src: hostPrefix(fx), To: fl}
	return natApply(thread, b, ns, starlark.None, starlark.None, s)
}

// natApply validates the rule and its namespace, makes the lab's table if
// this is the first nat rule of its family there, and adds the rule, each
// change journaled as soon as it is made.
// in and out are links of ns (values or names) to match, or None.
func natApply(thread *starlark.Thread, b *starlark.Builtin, ns *Netns, in, out starlark.Value, r kernel.NATRule) (starlark.Value, error) {
	if r.Action != kernel.Masquerade && !r.To.IsValid() {
		return nil, fmt.Errorf("%s: for parameter to: an address is required", b.Name())
	}
	family, err := natFamily(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if r.In, err = natLink(rt, ns, "in_", in); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if r.Out, err = natLink(rt, ns, "out", out); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if ns.name == kernel.Host {
		return nil, fmt.Errorf("%s: NAT in host() would change the machine's own firewall; put it in a namespace of the lab", b.Name())
	}
	if err := ns.mutable(rt); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	k, err := rt.Acting()
	if err != nil {
		return nil, err
	}
	nk, ok := k.(kernel.NAT)
	if !ok {
		return nil, fmt.Errorf("%s: this kernel cannot program nftables", b.Name())
	}
	table := "nsrun-" + rt.Lab
	if !natHasTable(rt, ns.name, family, table) {
		if err := rt.Change(thread, journal.Step{Op: opNftTable, NS: ns.name, Name: table, Kind: family}, func(kernel.Kernel, *journal.Step) error { return nk.NATTable(ns.name, family, table) }); err != nil {
			if errors.Is(err, os.ErrExist) {
				err = fmt.Errorf("table %s %s exists already and is not this run's: %w", family, table, err)
			}
			return nil, fmt.Errorf("%s: in netns %q: %w", b.Name(), ns.Name(), err)
		}
	}
	// The comment tags the rule for its undo; the journal's length makes it
	// unique within the run and the same on every run of the recipe.
	r.Comment = fmt.Sprintf("%s #%d", rt.Tag(), len(rt.Steps()))
	step := journal.Step{Op: opNftRule, NS: ns.name, Name: table, Kind: family, Alias: r.Comment, NAT: &r}
	if !rt.WouldAdopt(step) {
		// In an apply, the lab's rules were numbered by the run that
		// made them: a new rule's number may be one of theirs.
		base := r.Comment
		for n := 2; natCommentTaken(rt, ns.name, table, family, r.Comment); n++ {
			r.Comment = fmt.Sprintf("%s.%d", base, n)
		}
		step.Alias = r.Comment
	}
	if err := now(thread, rt, step, says("%s: in netns %q", b.Name(), ns.Name()), func(kernel.Kernel, *journal.Step) error { return nk.NATRule(ns.name, family, table, r) }); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// natHasTable reports whether the run has made the lab's table in ns: the
// journal holds its step until it is rolled back.
func natHasTable(rt *engine.Runtime, ns, family, table string) bool {
	has := false
	for _, s := range rt.Steps() {
		switch {
		case s.Op == journal.OpNetns && s.Name == ns: // made again: empty
			has = false
		case s.NS != ns || s.Name != table || s.Kind != family:
		case s.Op == opNftTable:
			has = true
		case s.Op == opNftTableDel:
			has = false
		}
	}
	return has
}

// natFamily is the table family of a rule's addresses: ip or ip6, never both.
func natFamily(r kernel.NATRule) (string, error) {
	var fam, first string
	for _, a := range []struct {
		param string
		addr  netip.Addr
	}{{"src", r.Src.Addr()}, {"dst", r.Dst.Addr()}, {"to", r.To}} {
		if !a.addr.IsValid() {
			continue
		}
		f := "ip"
		if a.addr.Is6() {
			f = "ip6"
		}
		if fam == "" {
			fam, first = f, a.param
		} else if f != fam {
			return "", fmt.Errorf("%s and %s are of different address families", first, a.param)
		}
	}
	if fam == "" {
		fam = "ip" // masquerade of everything
	}
	return fam, nil
}

// natLink resolves a link parameter: a link of ns, the name of one, or None.
func natLink(rt *engine.Runtime, ns *Netns, param string, v starlark.Value) (string, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return "", nil
	case *Link:
		if v.ns() != ns.name {
			return "", fmt.Errorf("for parameter %s: link %q is in netns %q, not %q", param, v.state.name, v.state.ns.Name(), ns.Name())
		}
		return v.state.name, nil
	case starlark.String:
		var name ifName
		if err := name.Unpack(v); err != nil {
			return "", fmt.Errorf("for parameter %s: %v", param, err)
		}
		k, err := rt.Kernel()
		if err != nil {
			return "", err
		}
		if _, err := k.LinkGet(ns.name, string(name)); err != nil {
			return "", fmt.Errorf("for parameter %s: no link %q in netns %q", param, string(name), ns.Name())
		}
		return string(name), nil
	}
	return "", fmt.Errorf("for parameter %s: got %s, want link or string", param, v.Type())
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// natPrefix is a network to match, "10.0.0.0/24", or a bare address; host
// bits must be clear. None means any.
type natPrefix netip.Prefix

func (p *natPrefix) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want string", v.Type())
	}
	q, err := parsePrefix(s)
	if err != nil {
		return err
	}
	if q != q.Masked() {
		return fmt.Errorf("%q has host bits set (did you mean %s?)", s, q.Masked())
	}
	*p = natPrefix(q)
	return nil
}
