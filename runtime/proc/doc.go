// Package proc reads what nsrun needs to know of the machine's processes
// from /proc: which there are, and of each its state, start time, command,
// environment, network namespace and mounts. It is the one parser of
// /proc/PID files in nsrun: the engine's teardown, gc, inspect and check,
// the sandbox's launcher and the tests all read processes through it.
package proc
