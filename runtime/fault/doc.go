// Package fault is nsrun's one fault injector. The engine consults an
// Injector at each point of each change of a run (before the kernel is
// asked, once it has answered, once the change is recorded), the undo
// before each undo it makes, and the namespace code between a namespace's
// unmount and its pin's removal. Tests make a chosen change fail with
// FailAt; the fault harness builds nsrun with the faultinject tag and sets
// the process's injector from NSRUN_FAULT, to kill it at any of those
// points.
package fault
