package builtins

import (
	"fmt"
	"net/netip"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/undo"
)

// The operations of policy routing (see journal.OpRule).
const (
	opRule    = journal.OpRule
	opRuleDel = journal.OpRuleDel
)

// The runtime undoes the rules in any journal it replays (down, recover):
// a rule is found by what it is and nsrun's protocol, so an intent is
// undone too.
func init() {
	undo.RegisterTagged(opRule, func(k kernel.Kernel, s journal.Step) error {
		if s.Rule == nil {
			return nil
		}
		rk, err := rulerOf(k)
		if err != nil {
			return err
		}
		return rk.RuleDel(s.NS, *s.Rule)
	})
	undo.RegisterTagged(opRuleDel, func(k kernel.Kernel, s journal.Step) error {
		if s.Rule == nil {
			return nil
		}
		rk, err := rulerOf(k)
		if err != nil {
			return err
		}
		// Idempotent: a copy an earlier try added goes first.
		if err := rk.RuleDel(s.NS, *s.Rule); err != nil {
			return err
		}
		return rk.RuleAdd(s.NS, *s.Rule)
	})
}

// ns.rule(src=None, dst=None, table=..., priority=None, iif=None, oif=None)
// adds a policy routing rule to a namespace the lab made: the packets from
// src, to dst (CIDRs or addresses), in by link iif, out of link oif, are
// routed by table (a number; 254 is main). Unset matches match every
// packet. priority orders the rules, lowest first; without one the kernel
// puts the rule before its first. The host namespace's policy is the
// machine's: a rule there is refused. The rollback removes it.
//
// Equivalent to: ip -n $ns rule add from $src to $dst iif $iif oif $oif lookup $table pref $priority
func netnsRule(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := b.Receiver().(*Netns)
	rt, r, err := ruleArgs(thread, b, n, args, kwargs)
	if err != nil {
		return nil, err
	}
	if labRule(rt, n.name, r) {
		return nil, fmt.Errorf("%s: netns %q has the rule %q already: this lab added it", b.Name(), n.Name(), r)
	}
	step := journal.Step{Op: opRule, NS: n.name, Name: r.String(), Rule: &r}
	w := says("%s: adding rule %q in netns %q", b.Name(), r, n.Name()).orExists("a rule like it exists")
	if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error {
		rk, err := rulerOf(k)
		if err != nil {
			return err
		}
		return rk.RuleAdd(n.name, r)
	}); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// ns.rule_del(src=None, dst=None, table=..., priority=None, iif=None,
// oif=None) removes the rule of the lab's that ns.rule() added with these
// arguments; the rollback puts it back.
//
// Equivalent to: ip -n $ns rule del from $src to $dst iif $iif oif $oif lookup $table pref $priority
func netnsRuleDel(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := b.Receiver().(*Netns)
	rt, r, err := ruleArgs(thread, b, n, args, kwargs)
	if err != nil {
		return nil, err
	}
	if !labRule(rt, n.name, r) {
		return nil, fmt.Errorf("%s: netns %q has no rule %q of this lab's: nsrun removes only the rules a lab added", b.Name(), n.Name(), r)
	}
	step := journal.Step{Op: opRuleDel, NS: n.name, Name: r.String(), Rule: &r}
	w := says("%s: removing rule %q in netns %q", b.Name(), r, n.Name())
	if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error {
		rk, err := rulerOf(k)
		if err != nil {
			return err
		}
		return rk.RuleDel(n.name, r)
	}); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// ruleArgs reads a rule's arguments, and checks it may be in n.
func ruleArgs(thread *starlark.Thread, b *starlark.Builtin, n *Netns, args starlark.Tuple, kwargs []starlark.Tuple) (*engine.Runtime, kernel.Rule, error) {
	var src, dst natPrefix
	var table routeTable
	var tableV starlark.Value = starlark.None
	var priority int
	var iifV, oifV starlark.Value = starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "src?", &src, "dst?", &dst, "table?", &tableV,
		"priority?", &priority, "iif?", &iifV, "oif?", &oifV); err != nil {
		return nil, kernel.Rule{}, err
	}
	if tableV == starlark.None {
		return nil, kernel.Rule{}, fmt.Errorf("%s: missing argument for table (the routing table the rule's packets are routed by)", b.Name())
	}
	if err := table.Unpack(tableV); err != nil {
		return nil, kernel.Rule{}, fmt.Errorf("%s: for parameter table: %v", b.Name(), err)
	}
	r := kernel.Rule{Family: 4, Src: netip.Prefix(src), Dst: netip.Prefix(dst), Table: int(table), Priority: priority}
	if r.Table == 0 {
		r.Table = kernel.MainTable
	}
	if priority < 0 || priority > 32765 {
		// 32766 and 32767 are the kernel's own rules (main, default).
		return nil, r, fmt.Errorf("%s: for parameter priority: %d is not a rule's priority (1 to 32765; the kernel's main and default rules are 32766 and 32767)", b.Name(), priority)
	}
	if r.Src.IsValid() && r.Dst.IsValid() && r.Src.Addr().Is6() != r.Dst.Addr().Is6() {
		return nil, r, fmt.Errorf("%s: src %s and dst %s are of different address families", b.Name(), r.Src, r.Dst)
	}
	if r.Src.IsValid() && r.Src.Addr().Is6() || r.Dst.IsValid() && r.Dst.Addr().Is6() {
		r.Family = 6
	}
	if n.name == kernel.Host {
		return nil, r, fmt.Errorf("%s: a rule in the host namespace would route the machine's traffic: nsrun never changes the machine's routing policy (add rules in a namespace of the lab's)", b.Name())
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, r, err
	}
	if err := n.mutable(rt); err != nil {
		return nil, r, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if r.IIF, err = natLink(rt, n, "iif", iifV); err != nil {
		return nil, r, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if r.OIF, err = natLink(rt, n, "oif", oifV); err != nil {
		return nil, r, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return rt, r, nil
}

// labRule reports whether the lab has rule r in ns (added, and not removed
// since).
func labRule(rt *engine.Runtime, ns string, r kernel.Rule) bool {
	has, name := false, r.String()
	for _, s := range rt.Steps() {
		switch {
		case s.Op == journal.OpNetns && s.Name == ns: // made again: empty
			has = false
		case s.NS != ns:
		case s.Op == opRule && s.Name == name:
			has = true
		case s.Op == opRuleDel && s.Name == name:
			has = false
		}
	}
	return has
}
