// Package engine runs recipes: the Runtime (a run's kernel, journal and
// ownership of what it made), the pipeline that queues changes behind the
// recipe, the Starlark interpreter (files, load(), the thread with its step
// and memory limits), and Run, Plan and Session (the REPL), which share one
// prelude: recover, lock, record the lab, run, roll back on failure. Each
// returns a store.Result and prints nothing of it.
package engine
