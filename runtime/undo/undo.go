package undo

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"

	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
	"github.com/nsrun/nsrun/runtime/proc"
	"golang.org/x/sys/unix"
)

// Rollback undoes the steps after mark, those of the lab with tag, and
// forgets them (rewriting the file). It never stops at a failure: each is
// returned, and the step stays in the journal so that a later `down` can
// try again.
func Rollback(j *journal.Journal, k kernel.Kernel, tag string, mark int) Result {
	r := Steps(k, tag, j.Since(mark))
	for _, name := range slices.Sorted(maps.Keys(r.Renewed)) {
		j.Renew(mark, name, r.Renewed[name])
	}
	if err := j.Truncate(mark, r.Failed); err != nil {
		r.Errs = append(r.Errs, fmt.Errorf("rewriting the journal: %w", err))
	}
	return r
}

// An Result is what an undo did.
type Result struct {
	Undone []journal.Step // undone, or found gone already
	Failed []journal.Step // not undone: kept, in journal order, for a later try
	Errs   []error        // why, one for each failure
	// Spared holds the objects found in the place of a step's that are
	// not the lab's (someone made one of that name since): the lab's own
	// is gone, and the stranger is left alone.
	Spared []error
	// Renewed holds, by name, the namespaces an undone removal made
	// again: the steps before the undone ones that made them must know
	// them by their new identity (see journal.Journal.Renew).
	Renewed map[string]kernel.NetnsID
}

// Undo reverses steps of the lab with tag, newest first, as cheaply as the
// kernel allows: a step whose object dies with a namespace that is being
// deleted is not undone one by one (deleting a device costs an RCU barrier;
// deleting its namespace removes all of them together). Background
// processes are stopped first, since they hold their namespaces alive.
// Every undo first checks that what it changes is still the lab's (see
// owner).
//
// Steps of another machine's (a lab across machines, see journal.Step.Away)
// are that machine's to undo: they count as undone here.
func Steps(k kernel.Kernel, tag string, steps []journal.Step) (r Result) {
	if here, away := local(steps); len(away) > 0 {
		r = Steps(k, tag, here)
		r.Undone = append(r.Undone, away...)
		return r
	}
	m := moot(steps)
	own := newOwner(k, tag)
	order := make([]int, 0, len(steps))
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Op == journal.OpProc {
			order = append(order, i)
		}
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Op != journal.OpProc {
			order = append(order, i)
		}
	}
	precheck(k, steps, order, m)
	batched := deleteGroup(k, steps, m)
	failedAt := map[int]bool{}
	var covered []int // steps another step's undo does
	n := 0
	for _, i := range order {
		s := steps[i]
		if m.void[i] {
			r.Undone = append(r.Undone, s)
			continue
		}
		if batched[i] {
			if _, ok := m.by[i]; !ok {
				r.Undone = append(r.Undone, s)
			} else {
				covered = append(covered, i)
			}
			continue
		}
		if _, foreign := undoers[s.Op]; foreign && s.State == journal.StateIntent && !tagged[s.Op] {
			// Another package's op whose outcome is unknown: its
			// undo cannot prove the object is the lab's. (Those ops
			// live in the lab's namespaces, which go anyway.)
			continue
		}
		if loc, ok := m.at[i]; ok {
			s.NS, s.Name = loc[0], loc[1]
		}
		if _, ok := m.by[i]; ok {
			covered = append(covered, i)
			continue
		}
		n++
		fault.At(fault.Undo, n)
		err := own.check(s)
		if err == nil && s.Op == journal.OpNetnsDel {
			var id *kernel.NetnsID
			if id, err = remakeNetns(k, s); id != nil {
				if r.Renewed == nil {
					r.Renewed = map[string]kernel.NetnsID{}
				}
				r.Renewed[s.Name] = *id
			}
			delete(own.netns, s.Name) // checked again, as it is now
		} else if err == nil {
			err = undo(k, s)
		}
		switch {
		case err == nil || errors.Is(err, errGone):
			r.Undone = append(r.Undone, s)
		case errors.Is(err, kernel.ErrNotOurs):
			// The object in the step's place is not the lab's: the
			// lab's is gone (or, for an intent, was never made).
			if s.State != journal.StateIntent {
				r.Spared = append(r.Spared, fmt.Errorf("%s (%s): left alone: %w", s, s.Pos, err))
			}
		default:
			failedAt[i] = true
			r.Errs = append(r.Errs, fmt.Errorf("%s (%s): %w", s, s.Pos, err))
		}
	}
	// A step covered by an undo that failed is kept too, for the retry
	// (one covered by a void step needs none).
	for _, i := range covered {
		if failedAt[m.by[i]] {
			failedAt[i] = true
		} else {
			r.Undone = append(r.Undone, steps[i])
		}
	}
	// A link whose move was under way when its run died may be at the
	// other end of the move: it is deleted there too, by its fingerprint.
	for _, i := range slices.Sorted(maps.Keys(m.alt)) {
		if failedAt[i] {
			continue
		}
		for _, loc := range m.alt[i] {
			if _, dies := m.gone(loc.ns); dies {
				continue
			}
			err := k.LinkDel(loc.ns, loc.name, loc.fp)
			if err != nil && !errors.Is(err, kernel.ErrNotFound) && !errors.Is(err, kernel.ErrNotOurs) {
				failedAt[i] = true
				r.Errs = append(r.Errs, fmt.Errorf("%s (%s), moved to netns %q: %w", steps[i], steps[i].Pos, kernel.NSArg(loc.ns), err))
			}
		}
	}
	for i, s := range steps { // kept in journal order
		if failedAt[i] {
			r.Failed = append(r.Failed, s)
		}
	}
	// The links deleted in the batch are gone already: the kernel answered
	// the request once it had removed them.
	deleted := map[[2]string]bool{}
	for i := range batched {
		deleted[m.at[i]] = true
	}
	for ns, links := range m.settle {
		links = slices.DeleteFunc(links, func(l kernel.NamedLink) bool { return deleted[[2]string{ns, l.Name}] })
		if len(links) == 0 {
			continue
		}
		if err := k.Settle(ns, links); err != nil {
			r.Errs = append(r.Errs, err)
		}
	}
	return r
}

// precheck asks a kernel that can (the real one) to confirm the tags of all
// the namespaces the undo deletes before it deletes any (see
// kernel.Netlink.PrecheckNetns).
func precheck(k kernel.Kernel, steps []journal.Step, order []int, m mootness) {
	pc, ok := kernel.As[kernel.NetnsPrechecker](k)
	if !ok {
		return
	}
	var names, tags []string
	var inos, mnts []uint64
	for _, i := range order {
		s := steps[i]
		if _, covered := m.by[i]; s.Op == journal.OpNetns && !covered {
			names, tags = append(names, s.Name), append(tags, s.Alias)
			inos, mnts = append(inos, s.Ino), append(mnts, s.Mnt)
		}
	}
	if len(names) > 1 {
		pc.PrecheckNetns(names, inos, mnts, tags)
	}
}

// deleteGroup deletes, in one request, the links the steps created in the
// host that are there still (see kernel.Netlink.LinkDelGroup), and returns
// those steps. Their undo is then done, and changes to their links moot.
func deleteGroup(k kernel.Kernel, steps []journal.Step, m mootness) map[int]bool {
	gd, ok := kernel.As[kernel.GroupDeleter](k)
	if !ok {
		return nil
	}
	byName := map[string]int{}
	var names []string
	var tag string
	for i, s := range steps {
		at, ok := m.at[i]
		if s.Op != journal.OpLink || s.State == journal.StateIntent || !ok || m.void[i] || at[0] != kernel.Host || at[1] != s.Name {
			continue
		}
		if tag != "" && s.Alias != tag {
			return nil // one lab's steps carry one tag
		}
		tag = s.Alias
		byName[s.Name] = i
		names = append(names, s.Name)
	}
	if len(names) < 2 {
		return nil
	}
	gone, err := gd.LinkDelGroup(kernel.Host, tag, names)
	if err != nil {
		return nil // each is deleted on its own, with its checks
	}
	batched := map[int]bool{}
	for _, n := range gone {
		batched[byName[n]] = true
	}
	return batched
}

type mootness struct {
	void   map[int]bool                  // steps whose effect a later step in the set took back: nothing to undo
	by     map[int]int                   // step -> the step whose undo also undoes it
	settle map[string][]kernel.NamedLink // links, by namespace, that die with a deleted one
	at     map[int][2]string             // link creations: where the link is now (ns, name)
	alt    map[int][]place               // link creations: where an end may be instead (an unconfirmed move)
	gone   func(ns string) (int, bool)   // the step that deletes namespace ns, if one does
}

// place is where a link of the lab may be, and how to know it.
type place struct {
	ns, name string
	fp       kernel.Fingerprint
}

// moot works out which steps a namespace deletion in the same set makes
// unnecessary, following links as they move (see model.State).
func moot(steps []journal.Step) mootness {
	m := mootness{void: map[int]bool{}, by: map[int]int{}, settle: map[string][]kernel.NamedLink{}, at: map[int][2]string{}, alt: map[int][]place{}}
	st := model.Replay(steps, true)
	deleted := map[string]int{} // namespace -> the step that created it
	for _, n := range st.Netns {
		deleted[n.Name] = n.Step
	}
	gone := func(ns string) (int, bool) { i, ok := deleted[ns]; return i, ok }
	m.gone = gone
	// A step in a namespace that was removed and made again under its
	// name before the one the undo deletes was in the earlier one.
	goneAfter := func(ns string, i int) (int, bool) {
		by, ok := gone(ns)
		return by, ok && by < i
	}
	// A link dies with a namespace it or its veth peer ends up in: the
	// step that created that namespace covers it.
	dies := func(l *model.Link, i int) (int, bool) {
		if by, ok := goneAfter(l.At.NS, i); ok {
			return by, true
		}
		if l.Peer != nil {
			return goneAfter(l.Peer.At.NS, i)
		}
		return 0, false
	}
	// A link made and removed in the same set is gone: neither its making
	// nor its removal is undone, nor anything done to it in between.
	// So is an address or a route added and removed: its addition is
	// the latest before the removal.
	for i, s := range steps {
		if s.State == journal.StateIntent {
			continue
		}
		switch s.Op {
		case journal.OpLinkDel:
			if l := st.Of[i]; l != nil && l.Made >= 0 {
				m.void[i], m.void[l.Made] = true, true
			}
		case journal.OpNetnsDel:
			// A namespace made and removed in the set is gone, with
			// everything done in it in between.
			for j := i - 1; j >= 0; j-- {
				if c := steps[j]; c.Op == journal.OpNetns && c.Name == s.Name && c.State != journal.StateIntent && !m.void[j] {
					m.void[i], m.void[j] = true, true
					for k := j + 1; k < i; k++ {
						if steps[k].NS == s.Name && steps[k].Op != journal.OpProc {
							m.void[k] = true
						}
					}
					break
				}
			}
		case journal.OpAddrDel, journal.OpRouteDel:
			for j := i - 1; j >= 0; j-- {
				if c := steps[j]; !m.void[j] && c.State != journal.StateIntent && adds(c, s, st.Of[j] == st.Of[i]) {
					m.void[i], m.void[j] = true, true
					break
				}
			}
		}
	}
	for i, s := range steps {
		if m.void[i] {
			continue
		}
		switch s.Op {
		case journal.OpLink:
			l := st.Of[i]
			ends := []*model.Link{l}
			if l.Peer != nil {
				ends = append(ends, l.Peer)
			}
			// Its moves are not undone: delete it where it is now, and
			// where a move whose outcome is unknown may have put it.
			m.at[i] = [2]string{l.At.NS, l.At.Name}
			for _, end := range ends {
				for _, k := range end.Maybe {
					m.alt[i] = append(m.alt[i], place{k.NS, k.Name, end.Fingerprint()})
				}
			}
			by, ok := dies(l, i)
			if !ok {
				continue
			}
			m.by[i] = by
			for _, end := range ends {
				if _, del := gone(end.At.NS); !del {
					m.settle[end.At.NS] = append(m.settle[end.At.NS], kernel.NamedLink{Name: end.At.Name, Fingerprint: end.Fingerprint()})
				}
			}
		case journal.OpMove, journal.OpUp, journal.OpMaster, journal.OpMTU, journal.OpMAC, journal.OpAddr, journal.OpAddrDel, journal.OpHairpin, journal.OpLinkDel,
			journal.OpFDB, journal.OpFDBDel, journal.OpShape:
			// Changes to a link that goes away go with it.
			l := st.Of[i]
			if by, ok := goneAfter(s.NS, i); ok {
				m.by[i] = by
			} else if by, ok := dies(l, i); ok {
				m.by[i] = by
			} else if l.Made >= 0 {
				m.by[i] = l.Made
			}
		case journal.OpNetns, journal.OpNetnsDel, journal.OpProc, journal.OpStop, journal.OpPrivate, journal.OpFile:
			// Never moot: a process outlives its namespace's deletion
			// (it holds the namespace alive), and a node's files are not
			// in the namespace.
		default: // routes, sysctls, and ops registered by other packages
			if by, ok := goneAfter(s.NS, i); ok {
				m.by[i] = by
			}
		}
	}
	// Follow chains (a change to a link that dies with a namespace) to the
	// step that is really undone.
	for i := range m.by {
		for {
			j, ok := m.by[m.by[i]]
			if !ok {
				break
			}
			m.by[i] = j
		}
	}
	return m
}

// adds reports whether step c added what removal d removes: the same
// address on the same link, or a route to the same destination with the
// same metric in the same namespace.
func adds(c, d journal.Step, sameLink bool) bool {
	switch d.Op {
	case journal.OpAddrDel:
		return c.Op == journal.OpAddr && sameLink && c.NS == d.NS && c.Name == d.Name && c.Addr == d.Addr
	case journal.OpRouteDel:
		return c.Op == journal.OpRoute && c.NS == d.NS && c.Route != nil && d.Route != nil && c.Route.Key() == d.Route.Key()
	}
	return false
}

// undoers holds the undo of operations that other packages journal.
var undoers = map[string]func(kernel.Kernel, journal.Step) error{}

// Register makes fn the undo of steps with operation op; fn must be
// idempotent and must remove an object only if it is still the lab's. A step
// in a namespace the same rollback deletes is not undone: the namespace's
// deletion does it. Call it from an init function.
func Register(op string, fn func(kernel.Kernel, journal.Step) error) {
	if _, dup := undoers[op]; dup {
		panic("runtime: duplicate undo for " + op)
	}
	undoers[op] = fn
}

// tagged are the other packages' operations whose undo knows the lab's
// object by itself (see RegisterTagged).
var tagged = map[string]bool{}

// RegisterTagged is Register for an operation whose undo finds the object
// by the lab's own mark (a NAT table named after the lab, a rule with its
// comment), or puts back what the step records: it undoes the step's
// intent too, a change that may have been made before nsrun died.
func RegisterTagged(op string, fn func(kernel.Kernel, journal.Step) error) {
	Register(op, fn)
	tagged[op] = true
}

// undo reverses one step. Every undo is idempotent: what is already gone
// counts as undone.
func undo(k kernel.Kernel, s journal.Step) error {
	switch s.Op {
	case journal.OpNetns:
		return k.NetnsDel(s.Name, s.Alias, kernel.NetnsID{Ino: s.Ino, Mnt: s.Mnt, Pin: s.Pin})
	case journal.OpLink:
		fp := kernel.Fingerprint{Alias: s.Alias, MAC: s.MAC}
		if s.NS == kernel.Host && s.State != journal.StateIntent {
			// Made, and so tagged (see kernel.Netlink.LinkAdd): only a
			// link cut short between its making and its tagging is known
			// by its MAC in the host.
			fp.MAC = ""
		}
		return k.LinkDel(s.NS, s.Name, fp)
	case journal.OpUp:
		if err := ignoreGone(k.LinkSetUp(s.NS, s.Name, s.Old == "up")); err != nil || s.Old != "up" || s.Was == nil {
			return err
		}
		return putBack(k, s.Was.Ends)
	case journal.OpMaster:
		return ignoreGone(k.LinkSetMaster(s.NS, s.Name, s.Old))
	case journal.OpMTU:
		mtu, err := strconv.Atoi(s.Old)
		if err != nil {
			return err
		}
		return ignoreGone(k.LinkSetMTU(s.NS, s.Name, mtu))
	case journal.OpMAC:
		mac, err := net.ParseMAC(s.Old)
		if err != nil {
			return err
		}
		return ignoreGone(k.LinkSetMAC(s.NS, s.Name, mac))
	case journal.OpMove:
		return ignoreGone(k.LinkMove(s.New, s.Name, s.NS))
	case journal.OpHairpin:
		return ignoreGone(k.LinkSetHairpin(s.NS, s.Name, s.Old == "on"))
	case journal.OpAddr:
		return k.AddrDel(s.NS, s.Name, s.Addr)
	case journal.OpAddrDel: // put back; there already (a removal that never happened) is done
		if err := ignoreExists(ignoreGone(k.AddrAdd(s.NS, s.Name, s.Addr))); err != nil || s.Was == nil {
			return err
		}
		return putBack(k, s.Was.Ends) // the routes the kernel dropped with it
	case journal.OpRoute:
		if s.OldRoute != nil {
			return unreplace(k, s)
		}
		return k.RouteDel(s.NS, *s.Route)
	case journal.OpRouteDel:
		return ignoreExists(ignoreGone(k.RouteAdd(s.NS, *s.Route)))
	case journal.OpLinkDel:
		return restoreLink(k, s)
	case journal.OpSysctl:
		if s.New != "" {
			// Restored only if it holds what the lab set: a value
			// someone set since is theirs.
			cur, err := k.SysctlGet(s.NS, s.Name)
			if err != nil {
				return ignoreGone(err)
			}
			if cur == s.Old {
				return nil
			}
			if cur != s.New {
				return fmt.Errorf("%s is %q, set since by someone else (the lab set %q): %w", s, cur, s.New, kernel.ErrNotOurs)
			}
		}
		return ignoreGone(k.SysctlSet(s.NS, s.Name, s.Old))
	case journal.OpProc:
		return proc.Stop(s.Pid, s.Start)
	case journal.OpStop: // a stopped process is not started again
		return nil
	case journal.OpPrivate:
		return os.RemoveAll(s.Path)
	case journal.OpFile:
		if s.Path == "" { // cut short before it was placed: the record's removal takes it
			return nil
		}
		if s.Old != "" { // the content it replaced goes back
			return ignoreGone(os.Rename(s.Old, s.Path))
		}
		return ignoreGone(os.Remove(s.Path))
	}
	if fn, ok := undoers[s.Op]; ok {
		return fn(k, s)
	}
	return fmt.Errorf("unknown journal operation %q", s.Op)
}

// unreplace puts back the route a replacement took the place of: in one
// change while the lab's route holds the place; else (it went, with its
// link) by an addition that takes no one else's place.
func unreplace(k kernel.Kernel, s journal.Step) error {
	holds := false
	if obs, ok := kernel.As[kernel.Observer](k); ok {
		routes, err := obs.Routes(s.NS)
		if err != nil {
			return ignoreGone(err)
		}
		key := s.Route.Key()
		for _, r := range routes {
			if (kernel.Route{Dst: r.Dst, Family: r.Family, Metric: r.Metric}).Key() == key && r.Proto == "nsrun" {
				holds = true
			}
		}
	}
	if holds {
		return ignoreGone(k.RouteReplace(s.NS, *s.OldRoute))
	}
	err := k.RouteAdd(s.NS, *s.OldRoute)
	if errors.Is(err, os.ErrExist) || errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.ENETDOWN) {
		return nil // someone's route is there, or the old one cannot be (its link is down): nothing to put back
	}
	return ignoreGone(err)
}

// putBack gives links back the addresses and routes the kernel dropped
// when they went down (see journal.Step.Was): those there already, or that
// cannot be (a gateway gone), are left as they are.
func putBack(k kernel.Kernel, ends []journal.EndWas) error {
	for _, e := range ends {
		for _, a := range e.Addrs {
			if err := ignoreExists(ignoreGone(k.AddrAdd(e.NS, e.Name, a))); err != nil {
				return err
			}
		}
	}
	for _, e := range ends {
		for _, r := range e.Routes {
			err := k.RouteAdd(e.NS, r)
			if errors.Is(err, os.ErrExist) || errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.ENETDOWN) {
				continue
			}
			if err := ignoreGone(err); err != nil {
				return err
			}
		}
	}
	return nil
}

// restoreLink makes a link the lab removed again, as it was (see
// journal.LinkWas). Every part is idempotent: a link of that name that
// carries the lab's tag is the one made by an earlier try; one that does not
// is someone else's, and left alone.
func restoreLink(k kernel.Kernel, s journal.Step) error {
	w := s.Was
	if w == nil {
		return nil // the removal never got as far as recording it: nothing was removed
	}
	if err := k.LinkAdd(w.Spec); errors.Is(err, os.ErrExist) {
		// An earlier try made it (perhaps cut short before its tag: then
		// it is known by the MAC it was given).
		info, gerr := k.LinkGet(w.Spec.NS, w.Spec.Name)
		if gerr != nil || !(kernel.Fingerprint{Alias: w.Spec.Alias, MAC: w.Spec.MAC.String()}).Matches(info.Alias, info.MAC) {
			return fmt.Errorf("%s: a link of that name is there, not the lab's: %w", s, kernel.ErrNotOurs)
		}
		if info.Alias == "" {
			if err := k.LinkSetAlias(w.Spec.NS, w.Spec.Name, w.Spec.Alias); err != nil {
				return err
			}
		}
	} else if err != nil {
		return err
	}
	for _, e := range w.Ends {
		if e.MTU > 0 {
			if err := k.LinkSetMTU(e.NS, e.Name, e.MTU); err != nil {
				return err
			}
		}
		for _, a := range e.Addrs {
			if err := ignoreExists(k.AddrAdd(e.NS, e.Name, a)); err != nil {
				return err
			}
		}
		if e.Master != "" {
			if err := ignoreGone(k.LinkSetMaster(e.NS, e.Name, e.Master)); err != nil {
				return err
			}
			if e.Hairpin {
				if err := k.LinkSetHairpin(e.NS, e.Name, true); err != nil {
					return err
				}
			}
		}
		for _, key := range slices.Sorted(maps.Keys(e.Sysctls)) {
			if err := k.SysctlSet(e.NS, key, e.Sysctls[key]); err != nil {
				return err
			}
		}
		if err := restoreShaping(k, e); err != nil {
			return err
		}
		if e.Up {
			if err := k.LinkSetUp(e.NS, e.Name, true); err != nil {
				return err
			}
		}
	}
	for _, p := range w.Ports {
		if err := ignoreGone(k.LinkSetMaster(w.Spec.NS, p, w.Spec.Name)); err != nil {
			return err
		}
	}
	// Routes last: a route through a link needs it up, with its address.
	for _, e := range w.Ends {
		for _, r := range e.Routes {
			if err := ignoreExists(k.RouteAdd(e.NS, r)); err != nil {
				return err
			}
		}
	}
	return nil
}

// restoreShaping gives a link made again the lab's shaping of it and its
// forwarding entries.
func restoreShaping(k kernel.Kernel, e journal.EndWas) error {
	if e.Shape != "" {
		sh, err := kernel.ParseShape(e.Shape)
		if err != nil {
			return err
		}
		shaper, ok := kernel.As[kernel.Shaper](k)
		if !ok {
			return errors.New("this kernel cannot shape links")
		}
		if err := shaper.SetShape(e.NS, e.Name, sh); err != nil {
			return err
		}
	}
	for _, text := range e.FDB {
		entry, err := kernel.ParseFDBEntry(text)
		if err != nil {
			return err
		}
		fk, ok := kernel.As[kernel.FDBer](k)
		if !ok {
			return errors.New("this kernel has no forwarding databases")
		}
		if err := fk.FDBDel(e.NS, e.Name, entry); err != nil { // an earlier try's
			return err
		}
		if err := fk.FDBAppend(e.NS, e.Name, entry); err != nil {
			return err
		}
	}
	return nil
}

// remakeNetns makes a namespace the lab removed again, under its name and
// tag, with lo as it was, the lab's sysctls of it and its routes through
// no link (see journal.OpNetnsDel); its links come back with the undo of
// their own removals, which come after it. It returns the identity of the
// namespace there now, nil if the removal never happened. A namespace of
// that name that is not the lab's is left alone.
func remakeNetns(k kernel.Kernel, s journal.Step) (*kernel.NetnsID, error) {
	if s.Was == nil || len(s.Was.Ends) == 0 {
		return nil, nil // the removal never got as far as recording it: nothing was removed
	}
	lo := s.Was.Ends[0]
	there, err := k.NetnsExists(s.Name)
	if err != nil {
		return nil, err
	}
	var id *kernel.NetnsID
	if there {
		// The removal never happened, or an earlier try made it again.
		info, err := k.LinkGet(s.Name, "lo")
		if err != nil || info.Alias != s.Alias {
			return nil, fmt.Errorf("%s: a namespace of that name is there, not the lab's: %w", s, kernel.ErrNotOurs)
		}
		if ider, ok := kernel.As[kernel.NetnsIdentifier](k); ok {
			got, err := ider.NetnsIdentity(s.Name)
			if err != nil {
				return nil, err
			}
			id = &got
		}
	} else {
		got, err := k.NetnsAdd(kernel.NetnsSpec{Name: s.Name, Tag: s.Alias, LoUp: lo.Up, NoIPv6: s.Mode == "noipv6"})
		if err != nil {
			return nil, err
		}
		id = &got
	}
	for _, key := range slices.Sorted(maps.Keys(lo.Sysctls)) {
		if err := k.SysctlSet(s.Name, key, lo.Sysctls[key]); err != nil {
			return id, err
		}
	}
	for _, r := range lo.Routes {
		if err := ignoreExists(k.RouteAdd(s.Name, r)); err != nil {
			return id, err
		}
	}
	return id, nil
}

func ignoreExists(err error) error {
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	return err
}

func ignoreGone(err error) error {
	if errors.Is(err, kernel.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// local splits steps into this machine's and other machines'.
func local(steps []journal.Step) (here, away []journal.Step) {
	for _, s := range steps {
		if s.Away {
			away = append(away, s)
		} else {
			here = append(here, s)
		}
	}
	if len(away) == 0 {
		return steps, nil
	}
	return here, away
}
