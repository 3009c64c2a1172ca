package fault

import (
	"errors"
	"fmt"
)

// A Point is where a fault may strike.
type Point int

const (
	Before Point = iota // a change, before the kernel is asked
	Made                // a change the kernel has made; its done record is not written
	After               // a change whose done record is written (or queued, see journal.Journal)
	Undo                // an undo that a rollback, `down` or a recovery makes itself
	Unpin               // a namespace deleted: unmounted, its pin file not yet removed
)

// An Injector is told of the n-th occurrence (from 1) of each point. An
// error it returns at Before makes that change fail without being made;
// what it returns elsewhere is ignored (it strikes by other means: a
// signal to the process).
type Injector func(at Point, n int) error

// ErrInjected is the error of an injected failure.
var ErrInjected = errors.New("injected failure")

// FailAt returns an injector that makes the n-th change fail.
func FailAt(n int) Injector {
	return func(at Point, i int) error {
		if at == Before && i == n {
			return fmt.Errorf("change %d: %w", i, ErrInjected)
		}
		return nil
	}
}

// Process is this process's injector: nil, except in binaries built with
// the faultinject tag for the fault harness, where NSRUN_FAULT sets it (see
// inject.go). A real run's changes, every undo and every namespace's
// unpinning consult it.
var Process Injector

// At tells Process of the n-th occurrence of point at, if there is one.
func At(at Point, n int) error {
	if Process == nil {
		return nil
	}
	return Process(at, n)
}
