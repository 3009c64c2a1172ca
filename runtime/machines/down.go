package machines

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/undo"
)

func init() { undo.RegisterTagged(journal.OpPart, undoPart) }

// busyFor bounds how long the undo of a part waits for the part's own run
// to end (it rolls back by itself once its coordinator is gone).
var busyFor = DefaultLease + 30*time.Second

// undoPart tears a lab's part down on its machine, with the machine's own
// nsrun: `nsrun down LAB` there (s.New the lab), which undoes only what
// that machine's journal holds. A part whose run is still going (it is
// rolling back after losing its coordinator) is waited for.
func undoPart(_ kernel.Kernel, s journal.Step) error {
	if s.Machine == nil {
		return fmt.Errorf("%s: no machine recorded", s)
	}
	if wasRemoved(*s.Machine, s.New) {
		return nil
	}
	deadline := time.Now().Add(busyFor)
	for {
		cmd := sshCommand(*s.Machine, connectTimeout, "down", s.New)
		out, err := cmd.CombinedOutput()
		msg := strings.TrimSpace(string(out))
		switch {
		case err == nil, strings.Contains(msg, fmt.Sprintf("no lab %q", s.New)):
			return nil
		case strings.Contains(msg, "in use by a running nsrun") && time.Now().Before(deadline):
			time.Sleep(500 * time.Millisecond)
			continue
		case msg != "":
			return fmt.Errorf("machine %q: nsrun down %s: %s", s.Machine.Name, s.New, firstLine(lastLines(msg)))
		default:
			return fmt.Errorf("machine %q: nsrun down %s: %w", s.Machine.Name, s.New, errors.Unwrap(err))
		}
	}
}

// removed holds the parts (machine, lab) that this process's run saw
// remove themselves when the lab was committed with --rm (see
// Coordinator.Finish): their undo would be one more SSH connection to
// find nothing.
var removed struct {
	sync.Mutex
	parts map[[2]string]bool
}

// removedPart records that machine m's part of lab removed itself.
func removedPart(m journal.Machine, lab string) {
	removed.Lock()
	defer removed.Unlock()
	if removed.parts == nil {
		removed.parts = map[[2]string]bool{}
	}
	removed.parts[[2]string{m.Name, lab}] = true
}

// wasRemoved reports whether machine m's part of lab removed itself, and
// forgets it: a later lab of that name is another.
func wasRemoved(m journal.Machine, lab string) bool {
	removed.Lock()
	defer removed.Unlock()
	key := [2]string{m.Name, lab}
	gone := removed.parts[key]
	delete(removed.parts, key)
	return gone
}

// lastLines is msg's last line that says something.
func lastLines(msg string) string {
	lines := strings.Split(msg, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return msg
}
