// Package builtins binds nsrun's recipe API to Starlark: one file per family
// of builtins, each a thin layer that validates its arguments, makes one
// change through the run's kernel and journals its undo.
package builtins
