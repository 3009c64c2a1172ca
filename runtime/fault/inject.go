//go:build faultinject

package fault

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Fault injection, for the test harness only. NSRUN_FAULT holds one or more
// K:ACTION, separated by commas:
//   - K:fail makes change K of the run fail;
//   - K:SIG-WHEN sends the run signal SIG (kill, int, term, hup) at change
//     K: "before" it is asked of the kernel, once it is "made" (the kernel
//     has answered, the done record is not written), or "after" its done
//     record;
//   - K:SIG-undo sends it before the K-th undo that a rollback, `down` or
//     `recover` makes itself;
//   - K:SIG-unpin sends it when the K-th namespace deleted has been
//     unmounted and its pin file is not yet removed.
func init() {
	spec := os.Getenv("NSRUN_FAULT")
	if spec == "" {
		return
	}
	changes := map[int]string{} // change -> action
	var undoAt, unpinAt int
	var undoSig, unpinSig syscall.Signal
	for _, one := range strings.Split(spec, ",") {
		k, action, _ := strings.Cut(one, ":")
		at, err := strconv.Atoi(k)
		sig, when, _ := strings.Cut(action, "-")
		s, known := signals[sig]
		if err != nil || (action != "fail" && !known) {
			fmt.Fprintf(os.Stderr, "nsrun: NSRUN_FAULT=%q: want K:ACTION[,K:ACTION]\n", spec)
			os.Exit(2) // usage
		}
		switch when {
		case "undo":
			undoAt, undoSig = at, s
		case "unpin":
			unpinAt, unpinSig = at, s
		default:
			changes[at] = action
		}
	}
	Process = func(at Point, n int) error {
		switch at {
		case Undo:
			if n == undoAt {
				syscall.Kill(os.Getpid(), undoSig)
			}
			return nil
		case Unpin:
			if n == unpinAt {
				syscall.Kill(os.Getpid(), unpinSig)
			}
			return nil
		}
		action, ok := changes[n]
		if !ok {
			return nil
		}
		if action == "fail" {
			return FailAt(n)(at, n)
		}
		sig, when, _ := strings.Cut(action, "-")
		if points[when] == at {
			syscall.Kill(os.Getpid(), signals[sig])
			// The signal is the process's once Go's handler has passed
			// it on: it struck at this point, not some changes later.
			time.Sleep(signalled)
		}
		return nil
	}
}

var (
	signals = map[string]syscall.Signal{"kill": syscall.SIGKILL, "int": syscall.SIGINT, "term": syscall.SIGTERM, "hup": syscall.SIGHUP}
	points  = map[string]Point{"before": Before, "made": Made, "after": After}
)

// signalled is how long a signal sent to the process itself takes to
// reach the goroutine that catches it, at most.
const signalled = 20 * time.Millisecond
