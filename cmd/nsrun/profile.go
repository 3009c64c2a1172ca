package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// profiled runs main's work with a CPU profile written to
// $NSRUN_CPUPROFILE and an execution trace to $NSRUN_TRACE, where set: how
// a run's time is found (go tool pprof, go tool trace).
func profiled(work func() int) int {
	if path := os.Getenv("NSRUN_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nsrun: NSRUN_CPUPROFILE: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "nsrun: NSRUN_CPUPROFILE: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	if path := os.Getenv("NSRUN_TRACE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nsrun: NSRUN_TRACE: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			fmt.Fprintf(os.Stderr, "nsrun: NSRUN_TRACE: %v\n", err)
			return 2
		}
		defer trace.Stop()
	}
	return work()
}
