package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/machines"
	"github.com/nsrun/nsrun/runtime/view"
)

func init() {
	register(command{"logs", "LAB [NETNS [NAME]] [-f]", "print what a lab's background processes (spawn_in) wrote; -f follows it", cmdLogs})
}

// followPoll is how often -f looks for more.
const followPoll = 200 * time.Millisecond

// Equivalent to: tail -n +1 [-f] STATE/LAB/logs/NETNS/NAME.log
func cmdLogs(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("logs", "LAB [NETNS [NAME]] [-f]", stderr)
	follow := fs.BoolP("follow", "f", false, "go on printing what they write, until interrupted or the lab is removed")
	sandboxIDFlag(fs)
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if fs.NArg() < 1 || fs.NArg() > 3 {
		fmt.Fprintf(stderr, "nsrun logs: want LAB [NETNS [NAME]] (see `nsrun ls`)\n")
		return engine.ExitUsage
	}
	if code, ok := inKeptSandbox(labArg(fs, fs.Arg(0)), append([]string{"logs"}, args...), stdout, stderr); ok {
		return code
	}
	lab, k, err := openLab(fs.Arg(0), stderr)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return engine.ExitUsage
	}
	k.Close()
	if steps, err := lab.Steps(); err == nil && fs.Arg(1) != "" {
		if m := machines.Where(steps, fs.Arg(1)); m != nil { // a lab across machines: the namespace is m's
			return remoteIn(*m, "", "", nil, nil, stdout, stderr, append([]string{"logs"}, args...)...)
		}
	}
	logs, err := view.Logs(lab, fs.Arg(1), fs.Arg(2))
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return engine.ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	printed := make([]int64, len(logs))
	last := -1
	for {
		for i, lg := range logs {
			f, err := os.Open(lg.Path)
			if err != nil {
				continue // not started yet, or gone with the lab
			}
			data, _ := io.ReadAll(io.NewSectionReader(f, printed[i], 1<<62))
			f.Close()
			if len(data) == 0 {
				continue
			}
			if len(logs) > 1 && last != i {
				if last >= 0 {
					fmt.Fprintln(stdout)
				}
				fmt.Fprintf(stdout, "==> %s/%s <==\n", lg.Netns, lg.Name)
			}
			last = i
			stdout.Write(data)
			printed[i] += int64(len(data))
		}
		if !*follow {
			return engine.ExitOK
		}
		if _, err := os.Stat(lab.Dir); err != nil {
			return engine.ExitOK // the lab was removed
		}
		select {
		case <-ctx.Done():
			return engine.ExitOK
		case <-time.After(followPoll):
		}
	}
}
