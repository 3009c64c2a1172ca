// Package journal is a lab's write-ahead record of its changes: Step (one
// change, with what undoes it) and its operations, the journal file a run
// appends to (an intent before each change, a done record after it, a void
// record when it failed), and reading that file back after a crash — a
// torn last record included (see Read and Damaged).
//
// What the steps amount to is package model's; undoing them is package
// undo's.
package journal
