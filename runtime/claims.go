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
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err == nil {
				f.WriteString(lab)
				f.Close()
				made = append(made, n)
				break
			}
			if !errors.Is(err, os.ErrExist) {
				release(stateDir, lab, made)
				return err
			}
			owner, _ := os.ReadFile(path)
			if _, err := os.Stat(filepath.Join(stateDir, string(owner), "lab.json")); errors.Is(err, os.ErrNotExist) {
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
		if owner, err := os.ReadFile(path); err == nil && string(owner) == lab {
			os.Remove(path)
		}
	}
}
