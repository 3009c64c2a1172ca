package runtime

// Steps reads the lab's journal: the changes its run made, oldest first
// (see ReadJournal: a change the run may have made is marked as an intent).
func (l *Lab) Steps() ([]Step, error) {
	return ReadJournal(l.journalPath())
}
