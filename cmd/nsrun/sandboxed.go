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
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/sandbox"
	"github.com/nsrun/nsrun/runtime/store"
)

// A lab kept in a sandbox (`nsrun run --sandbox --keep`) is not in the
// machine's state directory: the commands that take a lab's name look for
// it in the kept sandboxes when the machine has no lab of that name, and
// run themselves there (see sandbox.Hold).

// A lab in a kept sandbox is named LAB when no other sandbox (nor the
// machine) has a lab of that name, else ID:LAB, with the sandbox's id as
// `nsrun ls` shows it, or LAB with --sandbox-id ID.

// sandboxIDFlag adds --sandbox-id to a command that takes a lab's name.
func sandboxIDFlag(fs *pflag.FlagSet) *string {
	return fs.String("sandbox-id", "", "the lab is in the kept sandbox `ID` (as nsrun ls shows it); the same as naming the lab ID:LAB")
}

// labArg returns how a command's argument name names a lab, with the
// command's --sandbox-id, if it has one: ID:LAB.
func labArg(fs *pflag.FlagSet, name string) string {
	if f := fs.Lookup("sandbox-id"); f != nil {
		return addressed(f.Value.String(), name)
	}
	return name
}

// addressed returns how a lab is named with the --sandbox-id id: ID:LAB.
func addressed(id, name string) string {
	if id == "" || strings.Contains(name, ":") {
		return name
	}
	return id + ":" + name
}

// keptSandboxWith returns the kept sandbox that holds lab name and the
// lab's name in it: the one name's ID: prefix names, or else the one that
// has a lab of that name, if the machine has none.
func keptSandboxWith(name string) (s sandbox.Kept, lab string, ok bool, err error) {
	id, lab, explicit := strings.Cut(name, ":")
	if !explicit {
		id, lab = "", name
	}
	if sandbox.Inside() || store.ValidName(lab) != nil {
		return sandbox.Kept{}, "", false, nil
	}
	if _, err := os.Stat(filepath.Join(store.StateDir, lab)); err == nil && !explicit {
		return sandbox.Kept{}, "", false, nil
	}
	sandboxes, err := sandbox.ListKept(sandbox.HoldDir(store.StateDir))
	if err != nil {
		return sandbox.Kept{}, "", false, err
	}
	var found []sandbox.Kept
	known := false
	for _, s := range sandboxes {
		if explicit && s.ID() != id {
			continue
		}
		known = true
		labs, err := s.Labs()
		if untrusted(err) {
			return sandbox.Kept{}, "", false, err
		}
		if err != nil {
			continue // its holder is gone, say
		}
		if slices.Contains(labs, lab) {
			found = append(found, s)
		}
	}
	switch {
	case explicit && !known:
		return sandbox.Kept{}, "", false, fmt.Errorf("no kept sandbox %s (nsrun ls lists them)", id)
	case explicit && len(found) == 0:
		return sandbox.Kept{}, "", false, fmt.Errorf("sandbox %s has no lab %q (nsrun ls lists them)", id, lab)
	case len(found) == 0:
		return sandbox.Kept{}, "", false, nil
	case len(found) == 1:
		return found[0], lab, true, nil
	}
	var ids []string
	for _, s := range found {
		ids = append(ids, s.ID()+":"+lab)
	}
	return sandbox.Kept{}, "", false, fmt.Errorf("lab %q is in %d kept sandboxes: name one of them (%s), or pass --sandbox-id", lab, len(found), strings.Join(ids, ", "))
}

// inKeptSandbox runs `nsrun args...` in the kept sandbox that holds lab
// name, if one does (ok), and returns its exit code. In args, name is the
// lab's name in the sandbox there, without --sandbox-id (see forSandbox).
func inKeptSandbox(name string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	return inKeptSandboxOr(engine.ExitUsage, engine.ExitFailed, name, args, stdout, stderr)
}

// inKeptSandboxOr is inKeptSandbox with the exit codes of its own
// failures: to find the sandbox (usage), to run in it (failed).
func inKeptSandboxOr(usage, failed int, name string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	s, lab, ok, err := keptSandboxWith(name)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return usage, true
	}
	if !ok {
		return 0, false
	}
	code, err = s.Run(forSandbox(args, name, lab, args[0] == "exec"), os.Stdin, fileOr(stdout, os.Stdout), fileOr(stderr, os.Stderr))
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: sandbox %s: %v\n", s.ID(), err)
		return failed, true
	}
	return code, true
}

// forSandbox rewrites a command line for the sandbox that holds the lab:
// its first argument naming the lab (ID:LAB, or LAB) names it as the
// sandbox knows it, and --sandbox-id is dropped; with verbatim, what follows
// the lab's name is kept as is (exec's namespace and command, which may
// hold anything).
func forSandbox(args []string, name, lab string, verbatim bool) []string {
	out := make([]string, 0, len(args))
	renamed := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--", renamed && verbatim:
			return append(out, args[i:]...)
		case a == "--sandbox-id":
			i++
			continue
		case strings.HasPrefix(a, "--sandbox-id="):
			continue
		case !renamed && (a == name || a == lab): // ID:LAB, or LAB with --sandbox-id
			a, renamed = lab, true
		}
		out = append(out, a)
	}
	return out
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
