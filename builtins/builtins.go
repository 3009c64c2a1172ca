package builtins

import (
	"maps"
	"sort"

	"go.starlark.net/lib/json"
	"go.starlark.net/lib/math"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// universe is the recipe API: every builtin and module a recipe sees but
// argv, by family, as go.starlark.net's Universe lists its own. Each family's
// file defines its builtins, and its value types' methods in one literal map
// beside the type (netnsMethods, linkMethods, ...). The REPL adds help
// (help.go).
var universe = starlark.StringDict{
	// Namespaces (netns.go)
	"host":    starlark.NewBuiltin("host", host),
	"machine": starlark.NewBuiltin("machine", machine),
	"netns":   starlark.NewBuiltin("netns", netns),
	"ns":      starlark.NewBuiltin("ns", nsLookup),
	"link":    starlark.NewBuiltin("link", linkLookup),

	// Links (veth.go, bridge.go, macvlan.go, kinds.go, vxlan.go)
	"bridge":  starlark.NewBuiltin("bridge", bridge),
	"dummy":   starlark.NewBuiltin("dummy", dummy),
	"macvlan": starlark.NewBuiltin("macvlan", macvlan),
	"macvtap": starlark.NewBuiltin("macvtap", macvtap),
	"veth":    starlark.NewBuiltin("veth", veth),
	"vlan":    starlark.NewBuiltin("vlan", vlan),
	"vxlan":   starlark.NewBuiltin("vxlan", vxlan),

	// Commands in namespaces (exec.go)
	"exec_in":  starlark.NewBuiltin("exec_in", shared(execIn, firstNetns)),
	"spawn_in": starlark.NewBuiltin("spawn_in", spawnIn),

	// Waiting for the lab (wait.go)
	"wait_until": starlark.NewBuiltin("wait_until", waitUntil),

	// Observing the network (ping.go, capture.go)
	"capture":     starlark.NewBuiltin("capture", capture),
	"ping":        starlark.NewBuiltin("ping", shared(ping, firstNetns)),
	"pingall":     starlark.NewBuiltin("pingall", pingall),
	"reach":       starlark.NewBuiltin("reach", shared(reach, firstNetns)),
	"tcp_connect": starlark.NewBuiltin("tcp_connect", shared(tcpConnect, firstNetns)),
	"unreachable": starlark.NewBuiltin("unreachable", shared(unreachable, firstNetns)),

	// NAT and DHCP (nat.go, dhcp.go)
	"dhcp_client": starlark.NewBuiltin("dhcp_client", shared(dhcpClient, firstNetns)),
	"dhcp_server": starlark.NewBuiltin("dhcp_server", dhcpServer),
	"nat":         natModule,

	// Data files and formatting (data.go, sprintf.go)
	"load_data": starlark.NewBuiltin("load_data", loadData),
	"sprintf":   starlark.NewBuiltin("sprintf", sprintf),

	// Starlark's own
	"json":   json.Module,
	"math":   math.Module,
	"struct": starlark.NewBuiltin("struct", starlarkstruct.Make),
}

// Predeclared returns the names a recipe sees: the universe, and argv.
func Predeclared(argv []string) starlark.StringDict {
	d := make(starlark.StringDict, len(universe)+1)
	maps.Copy(d, universe)
	args := make([]starlark.Value, len(argv))
	for i, a := range argv {
		args[i] = starlark.String(a)
	}
	list := starlark.NewList(args)
	list.Freeze()
	d["argv"] = list
	return d
}

// builtinAttr returns method name of recv, bound to it, or nil for an
// unknown name (Starlark then reports it, with a "did you mean" hint), as
// go.starlark.net's own value types do.
func builtinAttr(recv starlark.Value, name string, methods map[string]*starlark.Builtin) (starlark.Value, error) {
	if m := methods[name]; m != nil {
		return m.BindReceiver(recv), nil
	}
	return nil, nil
}

// attrNames lists a value's fields and methods, sorted.
func attrNames(methods map[string]*starlark.Builtin, fields ...string) []string {
	names := make([]string, 0, len(fields)+len(methods))
	names = append(names, fields...)
	for m := range methods {
		names = append(names, m)
	}
	sort.Strings(names)
	return names
}
