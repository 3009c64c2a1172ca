package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/data"
	"github.com/nsrun/nsrun/runtime/engine"
)

// load_data(path) reads a YAML or JSON file (by its extension: .yaml,
// .yml, .json) and returns its value: mappings as dicts in the file's
// order, sequences as lists, scalars as strings, ints, floats, booleans
// or None. The file is found as load() finds a module (beside the file
// that asks, then in the library directories; an absolute path as it
// is) and read once a run: a plan and its run see the same data.
func loadData(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &path); err != nil {
		return nil, err
	}
	name, src, err := engine.ReadData(thread, path)
	if err != nil {
		return nil, err
	}
	v, err := data.Decode(name, src)
	if err != nil {
		return nil, fmt.Errorf("load_data: %w", err)
	}
	return v, nil
}
