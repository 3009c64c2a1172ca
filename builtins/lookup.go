package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
)

// ns(name) returns the lab's namespace name: the one a recipe's netns()
// made, from the REPL on a lab that is up, or from a library that was not
// handed it. "host" is host().
//
// Equivalent to: ip netns list | grep $name
func nsLookup(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if name == "host" || name == kernel.Host {
		return &Netns{name: kernel.Host}, nil
	}
	if !rt.OwnsNetns(rt.NetnsName(name)) {
		return nil, fmt.Errorf("%s: the lab has no namespace %q", b.Name(), name)
	}
	return netnsValue(rt, rt.NetnsName(name)), nil
}

// link(ns, name) returns the lab's link name in namespace ns (a netns
// value, or its name; "host" for host()): one it made, or one in a
// namespace it made (such as "lo").
//
// Equivalent to: ip -n $ns link show $name
func linkLookup(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var nsV starlark.Value
	var name string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "ns", &nsV, "name", &name); err != nil {
		return nil, err
	}
	var ns string
	switch v := nsV.(type) {
	case *Netns:
		ns = v.name
	case starlark.String:
		ns = string(v)
		if ns == "host" {
			ns = kernel.Host
		}
	default:
		return nil, fmt.Errorf("%s: for parameter ns: got %s, want netns or string", b.Name(), nsV.Type())
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if _, isStr := nsV.(starlark.String); isStr {
		ns = rt.NetnsName(ns)
	}
	if ns == kernel.Host {
		name = rt.HostLinkOf(name)
	}
	if l := labLink(rt, model.LinkKey{NS: ns, Name: name}); l != nil {
		return l, nil
	}
	if ns != kernel.Host && rt.OwnsNetns(ns) {
		return netnsLink(thread, starlark.NewBuiltin("link", netnsLink).BindReceiver(netnsValue(rt, ns)), starlark.Tuple{starlark.String(name)}, nil)
	}
	return nil, fmt.Errorf("%s: the lab has no link %q in netns %q", b.Name(), name, kernel.NSArg(ns))
}

// labLink returns, as a recipe's value, the link the lab made that is at
// k now, with its veth peer; nil if there is none.
func labLink(rt *engine.Runtime, k model.LinkKey) *Link {
	ml, ok := rt.Link(k.NS, k.Name)
	if !ok {
		return nil
	}
	steps := rt.Steps()
	mk := func(ml *model.Link) *Link {
		l := &Link{state: &linkState{ns: netnsValue(rt, ml.At.NS), name: ml.At.Name, kind: ml.Kind, mac: ml.MAC, untagged: ml.Untagged, made: true, master: ml.Master}}
		if ml.At.NS == kernel.Host {
			l.state.short = rt.ShortHostLink(ml.At.Name)
		}
		l.state.hairpin = hairpinOf(steps, ml.At)
		l.state.up = upOf(steps, ml.At)
		return l
	}
	l := mk(ml)
	if ml.Peer != nil && ml.Peer.Removed < 0 {
		l.state.peer = mk(ml.Peer)
		l.state.peer.state.peer = l
	}
	return l
}

// upOf reports whether the lab's last setting of the link at k took it up.
func upOf(steps []journal.Step, k model.LinkKey) bool {
	up := false
	for _, s := range steps {
		if s.Op == journal.OpUp && s.NS == k.NS && s.Name == k.Name {
			up = s.New == "up"
		}
	}
	return up
}
