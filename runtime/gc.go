package runtime

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// An Orphan is an object tagged as a lab's whose lab has no record (its
// state under /run/nsrun was deleted by hand, say).
type Orphan struct {
	Kind string // "netns", "link", "process" or "claim"
	Name string // the namespace or link name, or the process's command
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
	}
	return fmt.Sprintf("netns %q, tagged %q", o.Name, o.Tag)
}

// tagLab returns the lab a tag "nsrun:LAB" names, if it is exactly that.
func tagLab(tag string) (string, bool) {
	lab, ok := strings.CutPrefix(tag, tagPrefix)
	return lab, ok && ValidLabName(lab) == nil
}

// FindOrphans lists the objects tagged as nsrun's whose lab has no record in
// stateDir: named namespaces (by their lo's tag), links in the host
// namespace (by alias), and processes (by their environment tag).
func FindOrphans(stateDir string, k *kernel.Netlink) ([]Orphan, error) {
	known := func(lab string) bool {
		_, err := os.Stat(filepath.Join(stateDir, lab, "lab.json"))
		return err == nil
	}
	var found []Orphan
	state, _ := os.ReadDir(stateDir)
	for _, e := range state {
		name, ok := strings.CutPrefix(e.Name(), ".claim:")
		if !ok {
			continue
		}
		lab, _ := os.ReadFile(filepath.Join(stateDir, e.Name()))
		if !known(string(lab)) {
			found = append(found, Orphan{Kind: "claim", Name: name, Lab: string(lab), Tag: filepath.Join(stateDir, e.Name())})
		}
	}
	entries, _ := os.ReadDir(k.Dir)
	for _, e := range entries {
		tag, err := k.NetnsTag(e.Name())
		if lab, ok := tagLab(tag); err == nil && ok && !known(lab) {
			found = append(found, Orphan{Kind: "netns", Name: e.Name(), Lab: lab, Tag: tag})
		}
	}
	links, err := k.Links(kernel.Host)
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if lab, ok := tagLab(l.Alias); ok && !known(lab) {
			found = append(found, Orphan{Kind: "link", Name: l.Name, Lab: lab, Tag: l.Alias})
		}
	}
	procs, _ := os.ReadDir("/proc")
	mark := []byte(ProcessTagEnv + "=")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + p.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			v, ok := bytes.CutPrefix(kv, mark)
			if !ok {
				continue
			}
			labID, state, _ := strings.Cut(string(v), "@")
			if state != stateID(stateDir) {
				break // a lab of another state directory (a sandbox's)
			}
			lab, id, _ := strings.Cut(labID, "/")
			if l, err := OpenLab(stateDir, lab); err == nil && l.Info.ID == id {
				break // a live lab's
			}
			comm, _ := os.ReadFile("/proc/" + p.Name() + "/comm")
			found = append(found, Orphan{Kind: "process", Name: strings.TrimSpace(string(comm)), Lab: lab, Tag: string(v), Pid: pid})
		}
	}
	order := map[string]int{"process": 0, "link": 1, "netns": 2, "claim": 3} // processes hold namespaces
	sort.SliceStable(found, func(i, j int) bool { return order[found[i].Kind] < order[found[j].Kind] })
	return found, nil
}

// Remove removes the orphan, checking its tag again.
func (o Orphan) Remove(k *kernel.Netlink) error {
	switch o.Kind {
	case "process":
		return killLab(o.Tag, nil)
	case "claim":
		return os.Remove(o.Tag)
	case "link":
		return k.LinkDel(kernel.Host, o.Name, kernel.Fingerprint{Alias: o.Tag})
	}
	return k.NetnsDel(o.Name, o.Tag, kernel.NetnsID{})
}
