package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nsrun/nsrun/runtime"
	"github.com/nsrun/nsrun/runtime/nsexec"
)

// A lab kept in a sandbox (`nsrun run --sandbox --keep`) is not in the
// machine's state directory: the commands that take a lab's name look for
// it in the kept sandboxes when the machine has no lab of that name, and
// run themselves there (see nsexec.Hold).

// keptSandboxWith returns the kept sandbox that holds lab name, if the
// machine has no lab of that name and one sandbox has.
func keptSandboxWith(name string) (nsexec.KeptSandbox, bool, error) {
	if nsexec.Sandboxed() || runtime.ValidLabName(name) != nil {
		return nsexec.KeptSandbox{}, false, nil
	}
	if _, err := os.Stat(filepath.Join(runtime.StateDir, name)); err == nil {
		return nsexec.KeptSandbox{}, false, nil
	}
	sandboxes, err := nsexec.KeptSandboxes(nsexec.HoldDir(runtime.StateDir))
	if err != nil {
		return nsexec.KeptSandbox{}, false, err
	}
	var found []nsexec.KeptSandbox
	for _, s := range sandboxes {
		labs, err := s.Labs()
		if untrusted(err) {
			return nsexec.KeptSandbox{}, false, err
		}
		if err != nil {
			continue // its holder is gone, say
		}
		for _, l := range labs {
			if l == name {
				found = append(found, s)
			}
		}
	}
	switch len(found) {
	case 0:
		return nsexec.KeptSandbox{}, false, nil
	case 1:
		return found[0], true, nil
	}
	var ids []string
	for _, s := range found {
		ids = append(ids, s.ID())
	}
	return nsexec.KeptSandbox{}, false, fmt.Errorf("lab %q is in %d kept sandboxes (%s): give one run a --name of its own", name, len(found), strings.Join(ids, ", "))
}

// inKeptSandbox runs `nsrun args...` in the kept sandbox that holds lab
// name, if one does (ok), and returns its exit code.
func inKeptSandbox(name string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	s, ok, err := keptSandboxWith(name)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return runtime.ExitUsage, true
	}
	if !ok {
		return 0, false
	}
	code, err = s.Run(args, os.Stdin, fileOr(stdout, os.Stdout), fileOr(stderr, os.Stderr))
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: sandbox %s: %v\n", s.ID(), err)
		return runtime.ExitFailed, true
	}
	return code, true
}

// untrusted reports whether err says a kept sandbox's directory or socket
// may be someone else's.
func untrusted(err error) bool {
	var u *nsexec.UntrustedError
	return errors.As(err, &u)
}

// fileOr returns w if it is a file, else def.
func fileOr(w io.Writer, def *os.File) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return def
}

// keptSandboxRows returns, for `nsrun ls`, the rows of the labs in kept
// sandboxes, each with the sandbox's id. A directory or socket that may be
// someone else's is reported on stderr, and not used.
func keptSandboxRows() (rows []string) {
	if nsexec.Sandboxed() {
		return nil
	}
	sandboxes, err := nsexec.KeptSandboxes(nsexec.HoldDir(runtime.StateDir))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsrun: %v\n", err)
		return nil
	}
	for _, s := range sandboxes {
		r, w, err := os.Pipe()
		if err != nil {
			continue
		}
		done := make(chan []string)
		go func() {
			var lines []string
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				lines = append(lines, sc.Text()+"\tsandbox "+s.ID())
			}
			done <- lines
		}()
		null, _ := os.Open(os.DevNull)
		if _, err := s.Run([]string{"ls", "--rows"}, null, w, os.Stderr); untrusted(err) {
			fmt.Fprintf(os.Stderr, "nsrun: %v\n", err)
		}
		null.Close()
		w.Close()
		rows = append(rows, <-done...)
		r.Close()
	}
	return rows
}
