package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// Default places of the machine's state.
const (
	StateDir = "/run/nsrun" // tmpfs: a lab's record lives as long as its objects
	NetnsDir = "/run/netns" // where iproute2 pins named namespaces
)

// LabInfo is what a lab's record says of it.
type LabInfo struct {
	Name    string    `json:"name"`
	Recipe  string    `json:"recipe"`
	Pid     int       `json:"pid"`
	Started time.Time `json:"started"`
	Steps   int       `json:"-"`
}

var labName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// ValidLabName checks a lab name: it names a directory and a link tag.
func ValidLabName(name string) error {
	if !labName.MatchString(name) {
		return fmt.Errorf("invalid lab name %q: use 1-64 letters, digits, '_', '.' or '-', not starting with '.' or '-'", name)
	}
	return nil
}

// Lab is the on-disk record of a lab: a directory under the state directory
// holding lab.json and the journal.
type Lab struct {
	Dir  string
	Info LabInfo
}

func (l *Lab) journalPath() string { return filepath.Join(l.Dir, "journal") }

// CreateLab claims the name and records the lab. A lab of that name that is
// already up is an error: its objects are someone else's.
func CreateLab(stateDir string, info LabInfo) (*Lab, *Journal, error) {
	if err := ValidLabName(info.Name); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, nil, err
	}
	l := &Lab{Dir: filepath.Join(stateDir, info.Name), Info: info}
	if err := os.Mkdir(l.Dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, nil, fmt.Errorf("lab %q is already up (see `nsrun ls`; remove it with `nsrun down %s`, or pick another --name)", info.Name, info.Name)
		}
		return nil, nil, err
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(l.Dir, "lab.json"), b, 0o644); err != nil {
		os.RemoveAll(l.Dir)
		return nil, nil, err
	}
	j, err := OpenJournal(l.journalPath())
	if err != nil {
		os.RemoveAll(l.Dir)
		return nil, nil, err
	}
	return l, j, nil
}

// OpenLab reads the record of lab name.
func OpenLab(stateDir, name string) (*Lab, error) {
	if err := ValidLabName(name); err != nil {
		return nil, err
	}
	l := &Lab{Dir: filepath.Join(stateDir, name)}
	b, err := os.ReadFile(filepath.Join(l.Dir, "lab.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab %q (see `nsrun ls`)", name)
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &l.Info); err != nil {
		return nil, fmt.Errorf("%s: %w", l.Dir, err)
	}
	return l, nil
}

// Remove deletes the lab's record.
func (l *Lab) Remove() error { return os.RemoveAll(l.Dir) }

// ListLabs returns the labs recorded in stateDir, by name.
func ListLabs(stateDir string) ([]LabInfo, error) {
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var labs []LabInfo
	for _, e := range entries {
		l, err := OpenLab(stateDir, e.Name())
		if err != nil {
			continue
		}
		steps, _ := ReadJournal(l.journalPath())
		l.Info.Steps = len(steps)
		labs = append(labs, l.Info)
	}
	sort.Slice(labs, func(i, j int) bool { return labs[i].Name < labs[j].Name })
	return labs, nil
}

// Down undoes everything the lab recorded, newest first, and removes its
// record if nothing is left.
func (l *Lab) Down(k kernel.Kernel) (undone []Step, failed []error) {
	steps, err := ReadJournal(l.journalPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, []error{err}
	}
	undone, failedSteps, failed := Undo(k, steps)
	if len(failedSteps) > 0 {
		// Keep what could not be undone, for a later try.
		if err := writeSteps(l.journalPath(), failedSteps); err != nil {
			failed = append(failed, err)
		}
		return undone, failed
	}
	if err := l.Remove(); err != nil {
		failed = append(failed, err)
	}
	return undone, failed
}

var now = time.Now
