package store

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/proc"
)

// An Orphan is an object tagged as a lab's whose lab has no record (its
// state under /run/nsrun was deleted by hand, say), or a lab directory that
// nsrun cannot act on: a record it did not write (see seal.go), or a
// journal whose record is gone.
type Orphan struct {
	Kind string // "netns", "link", "process", "claim" or "record"
	Name string // the namespace or link name, the process's command, the lab directory
	Lab  string // from the tag
	Tag  string // the exact tag found
	Pid  int
}

func (o Orphan) String() string {
	switch o.Kind {
	case "process":
		return fmt.Sprintf("process %d (%s) of lab %q", o.Pid, o.Name, o.Lab)
	case "link":
		return fmt.Sprintf("link %q in the host namespace, tagged %q", o.Name, o.Tag)
	case "claim":
		return fmt.Sprintf("claim on %s of lab %q", o.Name, o.Lab)
	case "record":
		return fmt.Sprintf("record %s of lab %q, %s", o.Name, o.Lab, o.Tag)
	}
	return fmt.Sprintf("netns %q, tagged %q", o.Name, o.Tag)
}

// tagLab returns the lab a tag "nsrun:LAB" names, if it is exactly that.
func tagLab(tag string) (string, bool) {
	lab, ok := strings.CutPrefix(tag, TagPrefix)
	return lab, ok && ValidName(lab) == nil
}

// A Scanner is a kernel that can list what carries a lab's tag: the real
// one (see kernel.Netlink).
type Scanner interface {
	kernel.Kernel
	Links(ns string) ([]kernel.LinkInfo, error)
	NetnsNames() ([]string, error)
	NetnsTag(name string) (string, error)
}

// known reports whether lab has a record that nsrun wrote.
func known(stateDir, lab string) bool {
	l, err := openRecord(stateDir, lab)
	return err == nil && l.verify() == nil
}

// FindOrphans lists the objects tagged as nsrun's whose lab has no record in
// stateDir that nsrun wrote: named namespaces (by their lo's tag), links in
// the host namespace (by alias), processes (by their environment tag) and
// claims; and the lab directories nsrun cannot act on.
func FindOrphans(stateDir string, k Scanner) ([]Orphan, error) {
	seen := map[string]bool{} // lab -> known: each record is read once
	lost := func(lab string) bool {
		k, ok := seen[lab]
		if !ok {
			k = known(stateDir, lab)
			seen[lab] = k
		}
		return !k
	}
	found, err := findTagged(k, lost)
	if err != nil {
		return nil, err
	}
	claims, _ := readClaims(stateDir)
	for _, name := range slices.Sorted(maps.Keys(claims)) {
		if lab := claims[name]; lost(lab) {
			found = append(found, Orphan{Kind: "claim", Name: name, Lab: lab, Tag: filepath.Join(stateDir, claimsFile)})
		}
	}
	state, _ := os.ReadDir(stateDir)
	for _, e := range state {
		if name, ok := strings.CutPrefix(e.Name(), ".claim:"); ok {
			lab, _ := os.ReadFile(filepath.Join(stateDir, e.Name()))
			if lost(string(lab)) {
				found = append(found, Orphan{Kind: "claim", Name: name, Lab: string(lab), Tag: filepath.Join(stateDir, e.Name())})
			}
			continue
		}
		if !e.IsDir() || ValidName(e.Name()) != nil || !lost(e.Name()) {
			continue
		}
		dir := filepath.Join(stateDir, e.Name())
		if (&Lab{Dir: dir}).TryLock() != nil {
			continue // a live nsrun works on it
		}
		why := "not written by nsrun"
		if _, err := os.Stat(filepath.Join(dir, "lab.json")); errors.Is(err, os.ErrNotExist) {
			if fi, err := os.Stat(filepath.Join(dir, "journal")); err != nil || fi.Size() == 0 {
				continue // half made: recovery removes it
			}
			why = "its record (lab.json) is gone"
		}
		found = append(found, Orphan{Kind: "record", Name: dir, Lab: e.Name(), Tag: why})
	}
	marks := map[uint64][]string{}
	for _, pid := range proc.Pids() {
		tags := processTags(pid, marks)
		if len(tags) == 0 {
			continue
		}
		v := tags[0]
		labID, state, _ := strings.Cut(v, "@")
		if state != stateID(stateDir) {
			continue // a lab of another state directory (a sandbox's)
		}
		lab, id, _ := strings.Cut(labID, "/")
		if l, err := Open(stateDir, lab); err == nil && l.Info.ID == id {
			continue // a live lab's
		}
		found = append(found, Orphan{Kind: "process", Name: proc.Comm(pid), Lab: lab, Tag: v, Pid: pid})
	}
	order := map[string]int{"process": 0, "link": 1, "netns": 2, "claim": 3, "record": 4} // processes hold namespaces
	sort.SliceStable(found, func(i, j int) bool { return order[found[i].Kind] < order[found[j].Kind] })
	return found, nil
}

// findTagged lists the namespaces (by their lo's tag) and the links of the
// host namespace (by alias) tagged as of a lab for which want is true.
func findTagged(k Scanner, want func(lab string) bool) ([]Orphan, error) {
	var found []Orphan
	names, err := k.NetnsNames()
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		tag, err := k.NetnsTag(name)
		if lab, ok := tagLab(tag); err == nil && ok && want(lab) {
			found = append(found, Orphan{Kind: "netns", Name: name, Lab: lab, Tag: tag})
		}
	}
	links, err := k.Links(kernel.Host)
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if lab, ok := tagLab(l.Alias); ok && want(lab) {
			found = append(found, Orphan{Kind: "link", Name: l.Name, Lab: lab, Tag: l.Alias})
		}
	}
	return found, nil
}

// Remove removes the orphan, checking its tag again.
func (o Orphan) Remove(k kernel.Kernel) error {
	switch o.Kind {
	case "process":
		return KillLab(o.Tag, nil)
	case "claim":
		stateDir := filepath.Dir(o.Tag)
		unlock, err := LockState(stateDir)
		if err != nil {
			return err
		}
		defer unlock()
		if filepath.Base(o.Tag) == claimsFile {
			release(stateDir, o.Lab, []string{o.Name})
		} else {
			err = os.Remove(o.Tag) // an earlier version's claim file
		}
		dropKey(stateDir) // with the lab's last trace
		return err
	case "record":
		l := &Lab{Dir: o.Name, Info: Info{Name: o.Lab}}
		return l.Remove()
	case "link":
		return k.LinkDel(kernel.Host, o.Name, kernel.Fingerprint{Alias: o.Tag})
	}
	return k.NetnsDel(o.Name, o.Tag, kernel.NetnsID{})
}

// processTags returns the lab tags process pid carries: the mark of its
// mount namespace (see nsexec.SysSource), which it cannot shed, and the
// one in its environment (see ProcessTagEnv). The environment is read
// first: it is the cheaper file. A scan of all processes passes marks, to
// read each mount namespace's mounts once (most processes share the
// machine's).
func processTags(pid int, marks map[uint64][]string) []string {
	var tags []string
	if v, ok := proc.Env(pid, ProcessTagEnv); ok {
		tags = append(tags, v)
	}
	for _, v := range mountTags(pid, marks) {
		if !slices.Contains(tags, v) {
			tags = append(tags, v)
		}
	}
	return tags
}

// mountTags returns the lab tags of the sysfs mounts in pid's mount
// namespace, from marks if it has them.
func mountTags(pid int, marks map[uint64][]string) []string {
	mnt := proc.MountNamespace(pid)
	if tags, ok := marks[mnt]; ok && mnt != 0 {
		return tags
	}
	var tags []string
	for _, src := range proc.MountSources(pid, "sysfs") {
		if v, ok := strings.CutPrefix(src, nsexec.SysSource("")); ok && !slices.Contains(tags, v) {
			tags = append(tags, v)
		}
	}
	if marks != nil && mnt != 0 {
		marks[mnt] = tags
	}
	return tags
}
