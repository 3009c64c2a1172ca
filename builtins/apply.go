package builtins

import (
	"fmt"
	"strconv"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
)

// Removals holds the builtins an apply's removals call besides a recipe's
// (see engine.Apply): they name what they remove as the lab's journal
// does, and change only what the lab made.
var Removals = starlark.StringDict{
	"stop_process":  starlark.NewBuiltin("stop_process", stopProcess),
	"nat_rule_del":  starlark.NewBuiltin("nat_rule_del", natRuleDel),
	"nat_table_del": starlark.NewBuiltin("nat_table_del", natTableDel),
	"unset":         starlark.NewBuiltin("unset", unset),
}

// stop_process(pid) stops a process the lab started, for good.
func stopProcess(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var pid int
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pid", &pid); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if err := rt.Stopped(thread, pid); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return starlark.None, nil
}

// nat_rule_del(ns, table, family, comment) removes the lab's NAT rule
// with comment; its undo adds it again.
func natRuleDel(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns, table, family, comment string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "ns", &ns, "table", &table, "family", &family, "comment", &comment); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	var rule *journal.Step
	for _, s := range rt.Journal.Steps() {
		if s.Op == opNftRule && s.NS == ns && s.Name == table && s.Kind == family && s.Alias == comment {
			rule = &s
		}
	}
	if rule == nil || rule.NAT == nil {
		return nil, fmt.Errorf("%s: the lab has no NAT rule %q in netns %q that it can put back", b.Name(), comment, kernel.NSArg(ns))
	}
	return starlark.None, natRemove(thread, b, rt, *rule)
}

// nat_table_del(ns, table, family) removes the lab's (empty) NAT table.
func natTableDel(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns, table, family string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "ns", &ns, "table", &table, "family", &family); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if !natHasTable(rt, ns, family, table) {
		return nil, fmt.Errorf("%s: the lab has no table %s %s in netns %q", b.Name(), family, table, kernel.NSArg(ns))
	}
	return starlark.None, natTableRemove(thread, b, rt, journal.Step{NS: ns, Name: table, Kind: family})
}

// unset(op, ns, name, value) puts back a setting the recipe no longer makes
// (an MTU, a link's state, a sysctl) as it was before the lab first set it.
// The step is a revert (Kind "revert"): it ends the lab's settings of the
// key, and is none of the recipe's (see model.Live).
func unset(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var op, ns, name, value string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "op", &op, "ns", &ns, "name", &name, "value", &value); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if op == journal.OpSysctl {
		if ns != kernel.Host && !rt.OwnsNetns(ns) {
			return nil, fmt.Errorf("%s: netns %q is not the lab's", b.Name(), ns)
		}
	} else if !rt.OwnsLink(ns, name) {
		return nil, fmt.Errorf("%s: link %q in netns %q is not the lab's", b.Name(), name, kernel.NSArg(ns))
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	step := journal.Step{Op: op, NS: ns, Name: name, Kind: model.Revert, New: value}
	var work engine.Work
	switch op {
	case journal.OpMTU:
		mtu, err := strconv.Atoi(value)
		if err != nil {
			return nil, fmt.Errorf("%s: MTU %q: %w", b.Name(), value, err)
		}
		info, err := k.LinkGet(ns, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		step.Old = strconv.Itoa(info.MTU)
		work = func(k kernel.Kernel, _ *journal.Step) error { return k.LinkSetMTU(ns, name, mtu) }
	case journal.OpUp:
		info, err := k.LinkGet(ns, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		step.Old = map[bool]string{true: "up", false: "down"}[info.Up]
		work = func(k kernel.Kernel, _ *journal.Step) error { return k.LinkSetUp(ns, name, value == "up") }
	case journal.OpSysctl:
		old, err := k.SysctlGet(ns, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		step.Old = old
		work = func(k kernel.Kernel, _ *journal.Step) error { return k.SysctlSet(ns, name, value) }
	case journal.OpShape:
		sh, err := kernel.ParseShape(value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		step.Old = shapeOf(rt, ns, name)
		work = func(k kernel.Kernel, _ *journal.Step) error {
			shaper, err := shaperOf(k)
			if err != nil {
				return err
			}
			return shaper.SetShape(ns, name, sh)
		}
	default:
		return nil, fmt.Errorf("%s: %s is not a setting apply puts back", b.Name(), op)
	}
	return starlark.None, now(thread, rt, step, says("%s: putting back the %s of %q in netns %q", b.Name(), op, name, kernel.NSArg(ns)), work)
}
