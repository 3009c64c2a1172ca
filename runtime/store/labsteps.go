package store

import "github.com/nsrun/nsrun/runtime/journal"

// Steps reads the lab's journal: the changes its run made, oldest first
// (see journal.Read: a change the run may have made is marked as an intent).
func (l *Lab) Steps() ([]journal.Step, error) {
	return journal.Read(l.journalPath())
}
