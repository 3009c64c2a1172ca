//go:build faultinject

package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Fault injection, for the test harness only: NSRUN_FAULT=K:ACTION makes
// change K of the run fail (ACTION "fail"), or sends the run SIGKILL,
// SIGINT or SIGTERM just before or just after change K ("kill-before",
// "kill-after", "int-before", "int-after", "term-before", "term-after").
func init() {
	spec := os.Getenv("NSRUN_FAULT")
	if spec == "" {
		return
	}
	k, action, _ := strings.Cut(spec, ":")
	at, err := strconv.Atoi(k)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsrun: NSRUN_FAULT=%q: want K:ACTION\n", spec)
		os.Exit(ExitUsage)
	}
	what, when, _ := strings.Cut(action, "-")
	signals := map[string]syscall.Signal{"kill": syscall.SIGKILL, "int": syscall.SIGINT, "term": syscall.SIGTERM}
	faultHook = func(n int, after bool) error {
		if n != at {
			return nil
		}
		if what == "fail" {
			if after {
				return nil
			}
			return fmt.Errorf("injected failure at change %d", n)
		}
		if (when == "after") == after {
			syscall.Kill(os.Getpid(), signals[what])
		}
		return nil
	}
}
