package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/sandbox"
	"github.com/nsrun/nsrun/runtime/store"
)

// A lab kept in a sandbox (`nsrun run --sandbox --keep`) is not in the
// machine's state directory: the commands that take a lab's name look for
// it in the kept sandboxes when the machine has no lab of that name, and
// run themselves there (see sandbox.Hold).

// keptSandboxWith returns the kept sandbox that holds lab name, if the
// machine has no lab of that name and one sandbox has.
func keptSandboxWith(name string) (sandbox.Kept, bool, error) {
	if sandbox.Inside() || store.ValidName(name) != nil {
		return sandbox.Kept{}, false, nil
	}
	if _, err := os.Stat(filepath.Join(store.StateDir, name)); err == nil {
		return sandbox.Kept{}, false, nil
	}
	sandboxes, err := sandbox.ListKept(sandbox.HoldDir(store.StateDir))
	if err != nil {
		return sandbox.Kept{}, false, err
	}
	var found []sandbox.Kept
	for _, s := range sandboxes {
		labs, err := s.Labs()
		if untrusted(err) {
			return sandbox.Kept{}, false, err
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
		return sandbox.Kept{}, false, nil
	case 1:
		return found[0], true, nil
	}
	var ids []string
	for _, s := range found {
		ids = append(ids, s.ID())
	}
	return sandbox.Kept{}, false, fmt.Errorf("lab %q is in %d kept sandboxes (%s): give one run a --name of its own", name, len(found), strings.Join(ids, ", "))
}

// inKeptSandbox runs `nsrun args...` in the kept sandbox that holds lab
// name, if one does (ok), and returns its exit code.
func inKeptSandbox(name string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	s, ok, err := keptSandboxWith(name)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return engine.ExitUsage, true
	}
	if !ok {
		return 0, false
	}
	code, err = s.Run(args, os.Stdin, fileOr(stdout, os.Stdout), fileOr(stderr, os.Stderr))
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: sandbox %s: %v\n", s.ID(), err)
		return engine.ExitFailed, true
	}
	return code, true
}

// untrusted reports whether err says a kept sandbox's directory or socket
// may be someone else's.
func untrusted(err error) bool {
	var u *sandbox.UntrustedError
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
	eachKeptSandbox([]string{"ls", "--rows"}, func(s sandbox.Kept, out []byte) {
		where := "sandbox " + s.ID()
		if pid := s.Holder(); pid > 0 {
			where += fmt.Sprintf(" (holder %d)", pid)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			rows = append(rows, sc.Text()+"\t"+where)
		}
	})
	return rows
}

// keptSandboxLabs returns, for `nsrun ls --json`, the labs in kept
// sandboxes, each with the sandbox's id.
func keptSandboxLabs() (labs []labJSON) {
	eachKeptSandbox([]string{"ls", "--json"}, func(s sandbox.Kept, out []byte) {
		var in []labJSON
		if err := json.Unmarshal(out, &in); err != nil {
			fmt.Fprintf(os.Stderr, "nsrun: sandbox %s: reading its labs: %v\n", s.ID(), err)
			return
		}
		holder := s.Holder()
		for _, l := range in {
			l.Sandbox, l.Holder = s.ID(), holder
			labs = append(labs, l)
		}
	})
	return labs
}

// eachKeptSandbox runs `nsrun args...` in each kept sandbox (none from
// inside one) and gives fn what it printed on stdout. A directory or
// socket that may be someone else's is reported on stderr, and not used.
func eachKeptSandbox(args []string, fn func(s sandbox.Kept, out []byte)) {
	if sandbox.Inside() {
		return
	}
	sandboxes, err := sandbox.ListKept(sandbox.HoldDir(store.StateDir))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsrun: %v\n", err)
		return
	}
	for _, s := range sandboxes {
		out, _, err := sandboxOutput(s, args, os.Stderr)
		if untrusted(err) {
			fmt.Fprintf(os.Stderr, "nsrun: %v\n", err)
		}
		fn(s, out)
	}
}

// sandboxOutput runs `nsrun args...` in kept sandbox s, without input,
// and returns what it printed on stdout (its stderr goes to stderr) and its
// exit code.
func sandboxOutput(s sandbox.Kept, args []string, stderr *os.File) ([]byte, int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, 0, err
	}
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	null, _ := os.Open(os.DevNull)
	code, err := s.Run(args, null, w, stderr)
	null.Close()
	w.Close()
	out := <-done
	r.Close()
	return out, code, err
}

// downInSandbox runs `nsrun down` of lab name in kept sandbox s, and
// returns its exit code and, with asJSON, what it did (else it prints it).
func downInSandbox(s sandbox.Kept, name string, quiet, asJSON bool, stdout, stderr io.Writer) (int, []resultJSON) {
	args := []string{"down", name}
	if quiet {
		args = append(args, "-q")
	}
	failed := func(err error) (int, []resultJSON) {
		err = fmt.Errorf("sandbox %s: %w", s.ID(), err)
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return engine.ExitFailed, []resultJSON{undoJSON(store.Result{Lab: name, Err: err})}
	}
	if !asJSON {
		code, err := s.Run(args, os.Stdin, fileOr(stdout, os.Stdout), fileOr(stderr, os.Stderr))
		if err != nil {
			code, _ = failed(err)
		}
		return code, nil
	}
	out, code, err := sandboxOutput(s, append(args, "--json"), fileOr(stderr, os.Stderr))
	if err != nil {
		return failed(err)
	}
	var rs []resultJSON
	if err := json.Unmarshal(out, &rs); err != nil {
		_, rs = failed(fmt.Errorf("reading what down did: %w", err))
	}
	return code, rs
}
