//go:build faultinject

package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/nsrun/nsrun/runtime/nsexec"
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
			os.Exit(ExitUsage)
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
	if len(changes) > 0 {
		faultHook = func(n int, at faultPoint) error {
			action, ok := changes[n]
			if !ok {
				return nil
			}
			if action == "fail" {
				if at != beforeChange {
					return nil
				}
				return fmt.Errorf("injected failure at change %d", n)
			}
			sig, when, _ := strings.Cut(action, "-")
			if points[when] == at {
				syscall.Kill(os.Getpid(), signals[sig])
			}
			return nil
		}
	}
	if undoAt > 0 {
		undoHook = func(n int) {
			if n == undoAt {
				syscall.Kill(os.Getpid(), undoSig)
			}
		}
	}
	if unpinAt > 0 {
		n := 0
		nsexec.AfterUnmount = func() {
			if n++; n == unpinAt {
				syscall.Kill(os.Getpid(), unpinSig)
			}
		}
	}
}

var (
	signals = map[string]syscall.Signal{"kill": syscall.SIGKILL, "int": syscall.SIGINT, "term": syscall.SIGTERM, "hup": syscall.SIGHUP}
	points  = map[string]faultPoint{"before": beforeChange, "made": changeMade, "after": afterChange}
)
