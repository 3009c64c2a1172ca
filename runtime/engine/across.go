package engine

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/store"
)

// Local is the machine nsrun runs on, in a lab across machines: the
// coordinator's, where host() is.
const Local = "local"

// An Across joins one part of a lab across machines to the others. Every
// machine runs the whole recipe; each makes only its own objects (see
// kernel.Placed) and journals the others' as Away. The recipe's
// observations are where the parts meet: each is made on the machine of
// the namespace it observes, and its answer given to every part (see
// Exchange), so that the recipe takes the same path everywhere.
type Across interface {
	// Machine is the machine this part is made on (Local for the
	// coordinator's).
	Machine() string
	// Underlay is the address machine m's VXLAN endpoints use.
	Underlay(m string) (netip.Addr, error)
	// Ready is told, once the part's lab is recorded and before it
	// changes anything, what its plan makes (steps): it checks this
	// machine for them, and waits until every part is ready too.
	Ready(steps []journal.Step) error
	// Begin lets machine m's part begin making changes, once the
	// coordinator's journal records it (a part's: nothing to do).
	Begin(m journal.Machine) error
	// Exchange gives every part's mine at the recipe's next observation
	// and returns them all, in the order of the lab's machines.
	Exchange(mine []byte) ([][]byte, error)
	// Finish tells the other parts how this part's recipe ended (err)
	// and returns the lab's verdict: nil if every part ended well; and
	// whether the lab, made well, is to be removed now on every machine
	// (the coordinator's remove, its --rm: each part removes itself).
	Finish(err error, remove bool) (bool, error)
}

// notAcross is the error of a command that makes or changes a lab on one
// machine given a recipe that declares machines (the plan's parts): only
// a run that reaches them (see RunOptions.Connect) may make it, or every
// machine's objects would be made here.
func notAcross(what string, plan *Runtime) error {
	for s := range plan.Journal.All() {
		if s.Op == journal.OpPart {
			return fmt.Errorf("%s: machine %q: %s makes a lab on this machine only; a lab across machines is made by `nsrun run` on its coordinator (and changed by running it again)", s.Pos, s.Name, what)
		}
	}
	return nil
}

// oneMachine refuses what changes a lab on one machine (what) for lab, a
// lab across machines that is up (its journal's steps): it would act
// here on what other machines hold.
func oneMachine(lab, what string, steps []journal.Step) error {
	if _, machines, here := store.Placement(steps); machines != nil {
		return fmt.Errorf("lab %q is across machines (%s; this is %s): %s changes a lab on one machine only; run the lab's recipe again on its coordinator", lab, strings.Join(machines, ", "), here, what)
	}
	return nil
}

// Across returns the run's link to the lab's other machines, or nil for a
// lab on one machine (or a plan, which models every machine's part).
func (rt *Runtime) Across() Across { return rt.across }

// Declare records machine m of the lab (see machine()); ok is false if it
// was declared before.
func (rt *Runtime) Declare(m journal.Machine) (ok bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.machines == nil {
		rt.machines = map[string]journal.Machine{}
	}
	if _, dup := rt.machines[m.Name]; dup {
		return false
	}
	rt.machines[m.Name] = m
	return true
}

// Machines returns the machines the recipe declared, by name.
func (rt *Runtime) Machines() map[string]journal.Machine {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.machines
}

// Place puts the lab's namespace ns (the kernel's name) on machine m;
// name, if set, is a link of the host namespace instead (a bridge in a
// machine's own namespace).
func (rt *Runtime) Place(ns, name, m string) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if m != Local && rt.machines[m].Name == "" {
		return fmt.Errorf("no machine %q is declared (see machine())", m)
	}
	if rt.placed == nil {
		rt.placed = map[[2]string]string{}
	}
	key := [2]string{ns, name}
	if ns != kernel.Host {
		key[1] = ""
	}
	rt.placed[key] = m
	return nil
}

// MachineOf returns the machine of namespace ns, or of ns's link name in
// the host namespace: Local unless placed elsewhere.
func (rt *Runtime) MachineOf(ns, name string) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.machineOf(ns, name)
}

func (rt *Runtime) machineOf(ns, name string) string {
	if ns != kernel.Host {
		name = ""
	}
	if m, ok := rt.placed[[2]string{ns, name}]; ok {
		return m
	}
	return Local
}

// Here reports whether namespace ns (or the host's link name) is this
// part's to make and observe: always, but in a part of a lab across
// machines.
func (rt *Runtime) Here(ns, name string) bool {
	if rt.across == nil {
		return true
	}
	return rt.MachineOf(ns, name) == rt.across.Machine()
}

// place marks a step of a lab across machines with its machine, and as
// Away if it is another machine's.
func (rt *Runtime) place(s *journal.Step) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.machines) == 0 {
		return
	}
	switch {
	case s.Op == journal.OpPart:
		s.On = Local
	case s.Op == journal.OpNetns || s.Op == journal.OpNetnsDel:
		s.On = rt.machineOf(s.Name, "")
	case s.Route != nil && s.NS == kernel.Host:
		s.On = rt.machineOf(s.NS, s.Route.Dev)
	default:
		s.On = rt.machineOf(s.NS, s.Name)
	}
	s.Away = rt.across != nil && s.On != rt.across.Machine()
}

// SetAcross makes the run one part of a lab across machines: its kernel
// makes only this machine's objects (see kernel.Placed).
func (rt *Runtime) SetAcross(a Across) {
	rt.across = a
	rt.k = &kernel.Placed{Here: rt.k, Away: kernel.NewRecorder(), Of: rt.Here}
}

// Exchange makes the recipe's next observation a meeting of the lab's
// parts: the queued changes are made, then mine goes to every part and
// every part's comes back, in the order of the lab's machines.
func (rt *Runtime) Exchange(mine []byte) ([][]byte, error) {
	if err := rt.Sync(); err != nil {
		return nil, err
	}
	return rt.across.Exchange(mine)
}

// Meet is the meeting of the lab's parts before an observation: each
// waits until its own namespaces' links are operational (and, with v6,
// their IPv6 addresses usable), then for every other part, so that what
// one machine observes of another's is made and settled.
func (rt *Runtime) Meet(v6 bool) error {
	if err := rt.Operational(rt.Ctx, v6); err != nil {
		return err
	}
	_, err := rt.Exchange(nil)
	return err
}

// away drops from a step of another machine's what identifies its object
// here — an inode, a pid, made up by the recording kernel that stands for
// that machine (see kernel.Placed): nothing on this machine may ever be
// taken for it.
func away(s *journal.Step) {
	if s.Away {
		s.Ino, s.Mnt, s.Pin, s.Pid, s.Start = 0, 0, 0, 0, 0
	}
}
