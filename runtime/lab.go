package runtime

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// Default places of the machine's state.
const (
	StateDir = "/run/nsrun" // tmpfs: a lab's record lives as long as its objects
	NetnsDir = "/run/netns" // where iproute2 pins named namespaces
)

// The states of a lab.
const (
	LabRunning = "running" // a run is making it; if that run is dead, recovery removes it
	LabUp      = "up"      // the run succeeded and left it up, until `nsrun down`
	LabKept    = "kept"    // the run failed, and --keep-on-error left it up
	// A rollback or down could not undo everything; what is left is
	// recorded for `nsrun down` to try again.
	LabIncomplete = "incomplete"
)

// LabInfo is what a lab's record says of it.
type LabInfo struct {
	Name    string    `json:"name"`
	ID      string    `json:"id"` // this instance: tags its processes
	State   string    `json:"state"`
	Recipe  string    `json:"recipe"`
	Pid     int       `json:"pid"` // of the run that made it
	Started time.Time `json:"started"`
	Claims  []string  `json:"claims,omitempty"` // names it claimed (see claim)
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

// ErrLabBusy is returned for a lab that a live nsrun holds.
var ErrLabBusy = errors.New("in use by a running nsrun")

// Lab is the on-disk record of a lab: a directory under the state directory
// holding lab.json, the journal, and a lock file that the nsrun working on
// the lab holds (flock): the kernel releases it when that process dies, so a
// dead run is recognised without guessing by pid.
type Lab struct {
	Dir  string
	Info LabInfo
	lock *os.File

	// Spared holds what Down found in the place of the lab's objects and
	// left alone (see UndoResult).
	Spared []error
}

func (l *Lab) journalPath() string { return filepath.Join(l.Dir, "journal") }

// Tag is the alias every object of the lab carries (see Runtime.Tag).
func (l *Lab) Tag() string      { return tagPrefix + l.Info.Name }
func (l *Lab) infoPath() string { return filepath.Join(l.Dir, "lab.json") }

// newID returns a random lab instance id.
func newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// CreateLab records a new lab, locked by this process, in state running. A
// lab of that name that is already up (or running) is an error: its objects
// are someone else's. Call it with the state directory locked (see
// lockState), so that recovery never sees a half-made record.
func CreateLab(stateDir string, info LabInfo) (*Lab, *Journal, error) {
	if err := ValidLabName(info.Name); err != nil {
		return nil, nil, err
	}
	l := &Lab{Dir: filepath.Join(stateDir, info.Name), Info: info}
	if l.Info.ID == "" {
		l.Info.ID = newID()
	}
	l.Info.State = LabRunning
	if err := os.Mkdir(l.Dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, nil, fmt.Errorf("lab %q is already up (see `nsrun ls`; remove it with `nsrun down %s`, or pick another --name)", info.Name, info.Name)
		}
		return nil, nil, err
	}
	fail := func(err error) (*Lab, *Journal, error) {
		l.Unlock()
		os.RemoveAll(l.Dir)
		return nil, nil, err
	}
	if err := l.TryLock(); err != nil {
		return fail(err)
	}
	if err := l.save(); err != nil {
		return fail(err)
	}
	j, err := OpenJournal(l.journalPath())
	if err != nil {
		return fail(err)
	}
	return l, j, nil
}

// save writes lab.json atomically.
func (l *Lab) save() error {
	b, _ := json.MarshalIndent(l.Info, "", "  ")
	tmp := l.infoPath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, l.infoPath())
}

// SetState records the lab's state.
func (l *Lab) SetState(state string) error {
	l.Info.State = state
	return l.save()
}

// TryLock takes the lab's lock, or returns ErrLabBusy if a live process
// holds it.
func (l *Lab) TryLock() error {
	if l.lock != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(l.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("lab %q is %w (pid %d)", l.Info.Name, ErrLabBusy, l.Info.Pid)
		}
		return err
	}
	l.lock = f
	return nil
}

// Unlock releases the lab's lock.
func (l *Lab) Unlock() {
	if l.lock != nil {
		l.lock.Close()
		l.lock = nil
	}
}

// OpenLab reads the record of lab name.
func OpenLab(stateDir, name string) (*Lab, error) {
	if err := ValidLabName(name); err != nil {
		return nil, err
	}
	l := &Lab{Dir: filepath.Join(stateDir, name)}
	b, err := os.ReadFile(l.infoPath())
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

// reload reads the lab's record again.
func (l *Lab) reload() error {
	b, err := os.ReadFile(l.infoPath())
	if err != nil {
		return err
	}
	return json.Unmarshal(b, &l.Info)
}

// Remove deletes the lab's record and releases its claims.
func (l *Lab) Remove() error {
	release(filepath.Dir(l.Dir), l.Info.Name, l.Info.Claims)
	err := os.RemoveAll(l.Dir)
	l.Unlock()
	return err
}

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
		if !e.IsDir() || ValidLabName(e.Name()) != nil {
			continue
		}
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

// Down undoes everything the lab recorded, newest first — its processes
// (found by their tag, what they started included) first — and removes its
// record if nothing is left. The caller holds the lab's lock.
func (l *Lab) Down(k kernel.Kernel) (undone []Step, failed []error) {
	steps, err := ReadJournal(l.journalPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, []error{err}
	}
	if err := killLab(l.ProcessTag(), labNetns(steps)); err != nil {
		failed = append(failed, err)
	}
	r := Undo(k, l.Tag(), steps)
	undone, failed = r.Undone, append(failed, r.Errs...)
	l.Spared = append(l.Spared, r.Spared...)
	if len(r.Failed) > 0 || len(failed) > 0 {
		// Keep what could not be undone, for a later try.
		if err := writeSteps(l.journalPath(), r.Failed); err != nil {
			failed = append(failed, err)
		}
		l.SetState(LabIncomplete)
		return undone, failed
	}
	if err := l.Remove(); err != nil {
		failed = append(failed, err)
	}
	return undone, failed
}

var now = time.Now
