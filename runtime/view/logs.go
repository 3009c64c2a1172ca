package view

import (
	"fmt"
	"slices"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/store"
)

// A Log is the log of a background process of a lab (see spawn_in).
type Log struct {
	Netns string `json:"netns"`
	Name  string `json:"name"`
	Path  string `json:"path"`
}

// Logs returns the logs of the lab's background processes in namespace ns
// ("" for all) named name ("" for all), in the order they were started; a
// process started again under its name adds to its log, listed once.
func Logs(l *store.Lab, ns, name string) ([]Log, error) {
	steps, err := l.Steps()
	if err != nil {
		return nil, err
	}
	var all, out []Log
	for _, s := range steps {
		if s.Op != journal.OpProc || s.Path == "" {
			continue
		}
		lg := Log{Netns: kernel.NSArg(s.NS), Name: s.Name, Path: s.Path}
		if slices.Contains(all, lg) {
			continue
		}
		all = append(all, lg)
		if (ns == "" || ns == lg.Netns) && (name == "" || name == lg.Name) {
			out = append(out, lg)
		}
	}
	if len(out) == 0 && (ns != "" || name != "") {
		have := ""
		for _, lg := range all {
			have += " " + lg.Netns + "/" + lg.Name
		}
		if have == "" {
			have = " none"
		}
		return nil, fmt.Errorf("lab %q has no logged process %s (it has:%s)", l.Info.Name, target(ns, name), have)
	}
	return out, nil
}

func target(ns, name string) string {
	if name == "" {
		return "in netns " + ns
	}
	return ns + "/" + name
}
