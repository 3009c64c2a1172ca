// Package builtins binds nsrun's recipe API to Starlark: one file per family
// of builtins, each a thin layer that validates its arguments, makes one
// change through the run's kernel and journals its undo.
package builtins

import (
	"fmt"

	"go.starlark.net/lib/json"
	"go.starlark.net/lib/math"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// table is the recipe API, sorted.
var table = []*starlark.Builtin{
	starlark.NewBuiltin("bridge", bridge),
	starlark.NewBuiltin("dummy", dummy),
	starlark.NewBuiltin("exec_in", execIn),
	starlark.NewBuiltin("host", host),
	starlark.NewBuiltin("macvlan", macvlan),
	starlark.NewBuiltin("macvtap", macvtap),
	starlark.NewBuiltin("netns", netns),
	starlark.NewBuiltin("spawn_in", spawnIn),
	starlark.NewBuiltin("veth", veth),
	starlark.NewBuiltin("vlan", vlan),
}

// extra holds builtins and modules that families register from their own
// files' init functions (register), so that adding a family touches no
// other file.
var extra = starlark.StringDict{}

// register adds predeclared names: builtins under their own names, or a
// module (starlarkstruct.Module) under its name.
func register(vs ...starlark.Value) {
	for _, v := range vs {
		switch v := v.(type) {
		case *starlark.Builtin:
			extra[v.Name()] = v
		case *starlarkstruct.Module:
			extra[v.Name] = v
		default:
			panic(fmt.Sprintf("register: %s", v.Type()))
		}
	}
}

// Predeclared returns the names a recipe sees: the builtins, the struct,
// json and math modules, and argv.
func Predeclared(argv []string) starlark.StringDict {
	d := starlark.StringDict{
		"struct": starlark.NewBuiltin("struct", starlarkstruct.Make),
		"json":   json.Module,
		"math":   math.Module,
	}
	for _, b := range table {
		d[b.Name()] = b
	}
	for name, v := range extra {
		d[name] = v
	}
	args := make([]starlark.Value, len(argv))
	for i, a := range argv {
		args[i] = starlark.String(a)
	}
	list := starlark.NewList(args)
	list.Freeze()
	d["argv"] = list
	return d
}
