package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
	"github.com/nsrun/nsrun/runtime/undo"
	"github.com/nsrun/nsrun/runtime/words"
	"golang.org/x/sys/unix"
)

// State reads the lab's journal and returns the lab by it (see model.State):
// steps whose outcome is unknown (intents) are left out. The steps are
// returned too.
func (l *Lab) State() (*model.State, []journal.Step, error) {
	steps, err := journal.Read(l.journalPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("lab %q: %w", l.Info.Name, err)
	}
	return model.Replay(steps, false), steps, nil
}

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
	// LabApplying: an apply is changing it, from its journal's step Mark
	// on; if that apply is dead, recovery undoes those steps and the lab
	// is up again as it was.
	LabApplying = "applying"
	// A rollback or down could not undo everything; what is left is
	// recorded for `nsrun down` to try again.
	LabIncomplete = "incomplete"
	// LabUnverified is how a record nsrun did not write is listed (see
	// seal.go): nothing is done to it.
	LabUnverified = "unverified"
)

// Info is what a lab's record says of it.
type Info struct {
	Name    string    `json:"name"`
	ID      string    `json:"id"` // this instance: tags its processes
	State   string    `json:"state"`
	Recipe  string    `json:"recipe"`
	Pid     int       `json:"pid"` // of the run that made it
	Started time.Time `json:"started"`
	Claims  []string  `json:"claims,omitempty"` // names it claimed (see claim)
	Seal    string    `json:"seal"`             // see seal.go
	// JournalSize is the journal's size when the record was last saved:
	// once the lab is up, a shorter journal is one cut by someone.
	JournalSize int64 `json:"journal_size,omitempty"`
	Steps       int   `json:"-"` // the changes this machine made (see List)
	// Machines, for a lab across machines, are its machines (the
	// coordinator's first), and Machine the one this part is of (see
	// List); nil and "" for a lab on one machine.
	Machines []string `json:"-"`
	Machine  string   `json:"-"`
	Mark     int      `json:"mark,omitempty"` // applying: the steps the lab had before the apply
	// Applied holds the names an apply claimed (among Claims), released
	// if it is undone.
	Applied []string `json:"applied,omitempty"`
}

// ValidName checks a lab name: it names a directory and a link tag. It
// is ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$, checked by hand: that regexp's
// compilation was a third of nsrun's start.
func ValidName(name string) error {
	ok := len(name) >= 1 && len(name) <= 64
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || i > 0 && (c == '.' || c == '-')
	}
	if !ok {
		return fmt.Errorf("invalid lab name %q: use 1-64 letters, digits, '_', '.' or '-', not starting with '.' or '-'", name)
	}
	return nil
}

// ErrBusy is returned for a lab that a live nsrun holds.
var ErrBusy = errors.New("in use by a running nsrun")

// Lab is the on-disk record of a lab: a directory under the state directory
// holding lab.json, the journal, and a lock file that the nsrun working on
// the lab holds (flock): the kernel releases it when that process dies, so a
// dead run is recognised without guessing by pid.
type Lab struct {
	Dir  string
	Info Info
	lock *os.File
}

func (l *Lab) journalPath() string { return filepath.Join(l.Dir, "journal") }

// JournalPath is where the lab's journal is.
func (l *Lab) JournalPath() string { return l.journalPath() }

// Tag is the alias every object of the lab carries (see Runtime.Tag).
func (l *Lab) Tag() string { return TagPrefix + l.Info.Name }

func (l *Lab) infoPath() string { return filepath.Join(l.Dir, "lab.json") }

// NewID returns a random lab instance id.
func NewID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Create records a new lab, locked by this process, in state running. A
// lab of that name that is already up (or running) is an error: its objects
// are someone else's. Call it with the state directory locked (see
// lockState), so that recovery never sees a half-made record.
func Create(stateDir string, info Info) (*Lab, *journal.Journal, error) {
	if err := ValidName(info.Name); err != nil {
		return nil, nil, err
	}
	key, err := stateKey(stateDir, true)
	if err != nil {
		return nil, nil, err
	}
	l := &Lab{Dir: filepath.Join(stateDir, info.Name), Info: info}
	if l.Info.ID == "" {
		l.Info.ID = NewID()
	}
	l.Info.State, l.Info.Seal = LabRunning, seal(key, l.Info.Name, l.Info.ID)
	if err := os.Mkdir(l.Dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, nil, fmt.Errorf("lab %q is already up (see `nsrun ls`; remove it with `nsrun down %s`, or pick another --name)", info.Name, info.Name)
		}
		return nil, nil, err
	}
	fail := func(err error) (*Lab, *journal.Journal, error) {
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
	j, err := journal.Open(l.journalPath())
	if err != nil {
		return fail(err)
	}
	return l, j, nil
}

// save writes lab.json atomically, with the journal's size.
func (l *Lab) save() error {
	if fi, err := os.Stat(l.journalPath()); err == nil {
		l.Info.JournalSize = fi.Size()
	}
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

// TryLock takes the lab's lock and records this process as its holder in
// the lock file, or returns ErrBusy naming the live process that holds
// it: the run that made the lab (lab.json's pid) may be long gone, and a
// `down`, a recovery or a session hold it since.
func (l *Lab) TryLock() error {
	if l.lock != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(l.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid := lockHolder(f); pid > 0 {
				return fmt.Errorf("lab %q is %w (pid %d)", l.Info.Name, ErrBusy, pid)
			}
			return fmt.Errorf("lab %q is %w", l.Info.Name, ErrBusy)
		}
		return err
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("recording the holder of lab %q's lock: %w", l.Info.Name, err)
	}
	l.lock = f
	return nil
}

// lockHolder reads the pid of the live process holding a lab's lock, or 0.
// A holder writes it just after it takes the lock: an empty file, or a
// dead process's pid (one killed while holding it), is read again for a
// moment.
func lockHolder(f *os.File) int {
	for try := 0; try < 25; try++ {
		if try > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
		if err == nil && pid > 0 && !errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
			return pid
		}
	}
	return 0
}

// Unlock releases the lab's lock, its holder's pid cleared first.
func (l *Lab) Unlock() {
	if l.lock != nil {
		l.lock.Truncate(0)
		l.lock.Close()
		l.lock = nil
	}
}

// Open reads the record of lab name, which must be sealed (see seal.go).
func Open(stateDir, name string) (*Lab, error) {
	l, err := openRecord(stateDir, name)
	if err != nil {
		return nil, err
	}
	if err := l.verify(); err != nil {
		return nil, err
	}
	return l, nil
}

// Peek opens the record of lab name to look at, not to act on: its seal is
// not checked (the key is root's; `nsrun apply --dry-run` needs no root),
// so nothing may be changed on its word.
func Peek(stateDir, name string) (*Lab, error) { return openRecord(stateDir, name) }

// openRecord reads the record of lab name, sealed or not.
func openRecord(stateDir, name string) (*Lab, error) {
	if err := ValidName(name); err != nil {
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

// Remove deletes the lab's record and releases its claims; the state
// directory's key goes with its last lab (see seal.go).
func (l *Lab) Remove() error { return l.remove(true) }

// RemoveLocked is Remove for a caller that holds the state lock.
func (l *Lab) RemoveLocked() error { return l.remove(false) }

func (l *Lab) remove(lock bool) error {
	stateDir := filepath.Dir(l.Dir)
	if lock {
		unlock, err := LockState(stateDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	release(stateDir, l.Info.Name, l.Info.Claims)
	err := os.RemoveAll(l.Dir)
	l.Unlock()
	dropKey(stateDir)
	return err
}

// List returns the labs recorded in stateDir, by name.
func List(stateDir string) ([]Info, error) {
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var labs []Info
	for _, e := range entries {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		l, err := openRecord(stateDir, e.Name())
		if err != nil {
			continue
		}
		if l.verify() != nil {
			labs = append(labs, Info{Name: e.Name(), State: LabUnverified})
			continue
		}
		steps, _ := journal.Read(l.journalPath())
		l.Info.Steps, l.Info.Machines, l.Info.Machine = Placement(steps)
		labs = append(labs, l.Info)
	}
	sort.Slice(labs, func(i, j int) bool { return labs[i].Name < labs[j].Name })
	return labs, nil
}

// Placement reads, from a lab's journal, how many changes this machine
// made (the coordinator: the whole lab's) and, for a lab across machines, its machines (the coordinator's,
// then those it declared, in order) and the one this journal is the part
// of.
func Placement(steps []journal.Step) (changes int, machines []string, here string) {
	for _, s := range steps {
		if s.Away {
			continue
		}
		changes++
		if here == "" {
			here = s.On
		}
	}
	for _, s := range steps {
		if s.Op != journal.OpPart {
			continue
		}
		if len(machines) == 0 {
			machines = append(machines, s.On)
		}
		machines = append(machines, s.Name)
	}
	switch {
	case machines == nil:
		here = ""
	case here == machines[0]: // the coordinator's journal: the whole lab, made through its parts
		changes = len(steps)
	}
	return changes, machines, here
}

// Down undoes everything the lab recorded, newest first — its processes
// (those in its namespaces, and those carrying its tag) first — and
// removes its record if nothing is left; it returns what it did. The
// caller holds the lab's lock.
//
// A journal that cannot be trusted whole (records unreadable, cut shorter
// than when the lab was recorded, or gone) is undone as far as it goes;
// then what carries the lab's tag — namespaces, host links — is found and
// removed as well, the record is removed (nothing more can be learnt), and
// the damage is reported as a failure: what only the lost records knew of
// may remain.
func (l *Lab) Down(k kernel.Kernel) Result {
	r := Result{Lab: l.Info.Name, State: l.Info.State, Pid: l.Info.Pid}
	steps, damage, err := l.journal()
	if err != nil {
		r.Failed = []error{err}
		return r
	}
	if err := KillLab(l.ProcessTag(), LabNetns(steps)); err != nil {
		r.Failed = append(r.Failed, err)
	}
	u := undo.Steps(k, l.Tag(), steps)
	r.Undone, r.Left, r.Spared = u.Undone, u.Failed, u.Spared
	r.Failed = append(r.Failed, u.Errs...)
	if damage != nil {
		swept, errs := l.sweep(k)
		r.Failed = append(r.Failed, errs...)
		also := ""
		if len(swept) > 0 {
			also = fmt.Sprintf(", and removed %s tagged as the lab's (%s)", words.Plural(len(swept), "object"), strings.Join(swept, ", "))
		}
		r.Failed = append(r.Failed, fmt.Errorf("%w: undid the %s it records%s; what only the damaged part recorded may remain", damage, words.Plural(len(r.Undone), "change"), also))
		l.RemoveInto(&r)
		return r
	}
	if len(r.Failed) > 0 {
		// Keep what could not be undone, for a later try.
		if err := journal.WriteSteps(l.journalPath(), u.Failed); err != nil {
			r.Failed = append(r.Failed, err)
		}
		l.Settle(&r, LabIncomplete)
		return r
	}
	l.RemoveInto(&r)
	return r
}

// journal reads the lab's journal and, if it cannot be trusted whole, says
// why (damage): records unreadable, or, once the run has recorded the lab
// up or kept, a journal cut shorter than it was then, or gone. A run that died before
// its journal had a record made nothing.
func (l *Lab) journal() (steps []journal.Step, damage, err error) {
	path := l.journalPath()
	steps, err = journal.Read(path)
	var dj *journal.Damaged
	switch {
	case errors.As(err, &dj):
		return steps, fmt.Errorf("its journal is damaged: %w", err), nil
	case errors.Is(err, os.ErrNotExist):
		if l.Info.State != LabRunning || l.Info.JournalSize > 0 {
			return nil, fmt.Errorf("its journal %s is gone", path), nil
		}
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	final := l.Info.State == LabUp || l.Info.State == LabKept // nothing writes the journal after but down
	if fi, err := os.Stat(path); err == nil && final && fi.Size() < l.Info.JournalSize {
		return steps, fmt.Errorf("its journal %s is shorter (%d bytes) than when the lab was recorded (%d)", path, fi.Size(), l.Info.JournalSize), nil
	}
	return steps, nil, nil
}

// sweep removes the namespaces and host links that carry the lab's tag, on
// a kernel that can find them (see Scanner), and names what it removed.
func (l *Lab) sweep(k kernel.Kernel) (swept []string, failed []error) {
	sc, ok := k.(Scanner)
	if !ok {
		return nil, nil
	}
	found, err := findTagged(sc, func(lab string) bool { return lab == l.Info.Name })
	if err != nil {
		return nil, []error{err}
	}
	for _, o := range found {
		if err := o.Remove(k); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", o, err))
			continue
		}
		swept = append(swept, o.String())
	}
	return swept, failed
}

// TagPrefix starts every lab's tag: "nsrun:LAB".
const TagPrefix = "nsrun:"
