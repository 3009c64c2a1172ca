package nsexec

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// nofileEnv carries the descriptor limit nsrun was started with to the
// commands it runs, which get it back (see RaiseNofile).
const nofileEnv = "NSRUN_NOFILE"

// RaiseNofile raises the process's limit of open descriptors as far as the
// kernel allows (fs.nr_open), which a process with CAP_SYS_RESOURCE may: a
// large lab does not depend on the shell's ulimit. The commands nsrun
// starts get the limit it was started with back, as if nsrun had not
// raised it. It is a no-op where nothing can be raised.
func RaiseNofile() {
	var was unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &was) != nil {
		return
	}
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return
	}
	max, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || max <= was.Max {
		return
	}
	if unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: max, Max: max}) != nil {
		return
	}
	// Go raised the soft limit to the hard one at start; a command had the
	// soft limit nsrun was given. Lacking it here, the hard one is what
	// the command gets (as Go's own os/exec would give it).
	os.Setenv(nofileEnv, fmt.Sprintf("%d:%d", was.Cur, was.Max))
}

// restoreNofile gives a command the descriptor limit nsrun was started
// with (see RaiseNofile).
func restoreNofile() {
	v, ok := os.LookupEnv(nofileEnv)
	if !ok {
		return
	}
	os.Unsetenv(nofileEnv)
	var cur, max uint64
	if _, err := fmt.Sscanf(v, "%d:%d", &cur, &max); err == nil && cur <= max {
		unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: cur, Max: max})
	}
}
