package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Names that live outside a lab's own namespaces are global: namespace
// names, and link names in the host namespace. Before it changes anything,
// a run claims every such name its plan will create, all at once under the
// state directory's lock; a run whose names overlap a live lab's fails there,
// naming the conflict, with nothing changed. Claims are files
// STATE/.claim:KIND:NAME holding the lab's name (a lab's name never starts
// with a dot), removed with their lab.

func claimPath(stateDir, claim string) string { return filepath.Join(stateDir, ".claim:"+claim) }

// claimName is the claim of a namespace or of a host-namespace link.
func claimName(kind, name string) string { return kind + ":" + name }

// lockState takes the state directory's lock (a flock on the directory
// itself: no lock file to outlive the labs), for making lab records and
// claims atomically with respect to other nsruns. Its release is returned.
func lockState(stateDir string) (func(), error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Open(stateDir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// claim claims names for lab, all or none. A claim held by a lab whose
// record is gone is stale and taken over. Call it with the state locked.
func claim(stateDir, lab string, names []string) error {
	sort.Strings(names)
	var made []string
	for _, n := range names {
		path := claimPath(stateDir, n)
		for {
			err := writeNew(path, lab)
			if err == nil {
				made = append(made, n)
				break
			}
			if !errors.Is(err, os.ErrExist) {
				release(stateDir, lab, made)
				return err
			}
			owner, _ := readClaim(path)
			if _, err := os.Stat(filepath.Join(stateDir, owner, "lab.json")); errors.Is(err, os.ErrNotExist) {
				os.Remove(path) // stale: its lab is gone
				continue
			}
			release(stateDir, lab, made)
			kind, name, _ := strings.Cut(n, ":")
			return fmt.Errorf("%s %q is taken by lab %q (see `nsrun ls`)", kindWord(kind), name, owner)
		}
	}
	return nil
}

// writeNew creates the file path holding s, failing if it exists. A run
// claims every global name of its lab: plain system calls, not an os.File
// (whose poller registration triples the calls), are the cheap way.
func writeNew(path, s string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	for b := []byte(s); len(b) > 0 && err == nil; {
		var n int
		if n, err = unix.Write(fd, b); err == nil {
			b = b[n:]
		}
	}
	if err = errors.Join(err, unix.Close(fd)); err != nil {
		os.Remove(path) // a cut claim could name another lab
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// readClaim returns the lab holding a claim.
func readClaim(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var b []byte
	buf := make([]byte, 256)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return "", &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return string(b), nil
		}
		b = append(b, buf[:n]...)
	}
}

func kindWord(kind string) string {
	if kind == "link" {
		return "link name (host namespace)"
	}
	return kind
}

// release gives up lab's claims on names.
func release(stateDir, lab string, names []string) {
	for _, n := range names {
		path := claimPath(stateDir, n)
		if owner, err := readClaim(path); err == nil && owner == lab {
			os.Remove(path)
		}
	}
}
