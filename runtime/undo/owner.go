package undo

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// owner checks, before each undo, that what the step names is still the
// lab's: an undo acts only on what carries the lab's tag, so a stranger
// that took an object's name since, or a record nsrun did not write, can
// never make it change what it did not create. An empty tag matches
// nothing.
//
// Namespaces, links and processes are checked by their own undo (inode and
// tag; tag, or MAC for a link whose making was cut short; pid and start
// time), namespaces and links only if recorded with the lab's tag. A change in a namespace of the
// lab's is the lab's if the namespace still is (its lo carries the tag). In
// the host namespace the lab changes only its own links: a change there is
// undone only on a link that carries the tag, and a sysctl only if it is a
// per-device key of such a link.
type owner struct {
	k     kernel.Kernel
	tag   string
	netns map[string]error // namespaces checked, and what was found
}

func newOwner(k kernel.Kernel, tag string) *owner {
	return &owner{k: k, tag: tag, netns: map[string]error{}}
}

// errGone is the check's answer for an object that is no longer there:
// its undo has nothing left to do.
var errGone = errors.New("gone")

func (o *owner) check(s journal.Step) error {
	if o.tag == "" {
		return fmt.Errorf("no lab tag to check %s by: %w", s, kernel.ErrNotOurs)
	}
	switch s.Op {
	case journal.OpLinkDel: // undone by making it again, where it was
		if s.Was != nil && s.Was.Spec.Alias != o.tag {
			return fmt.Errorf("%s is recorded with tag %q, not the lab's %q: %w", s, s.Was.Spec.Alias, o.tag, kernel.ErrNotOurs)
		}
		if s.Was == nil {
			return nil
		}
		for _, e := range s.Was.Ends {
			if e.NS != kernel.Host {
				if err := o.namespace(e.NS); err != nil {
					return err
				}
			} else if e.Master != "" {
				if err := o.hostLink(e.Master); err != nil { // the bridge it goes back in
					return err
				}
			}
		}
		if s.Was.Spec.NS == kernel.Host {
			for _, p := range s.Was.Ports { // the ports it takes back
				if err := o.hostLink(p); err != nil {
					return err
				}
			}
		}
		return nil
	case journal.OpNetns, journal.OpNetnsDel, journal.OpLink:
		if s.Alias != o.tag {
			return fmt.Errorf("%s is recorded with tag %q, not the lab's %q: %w", s, s.Alias, o.tag, kernel.ErrNotOurs)
		}
		return nil
	case journal.OpProc, journal.OpStop:
		return nil
	case journal.OpPart: // undone by the machine's own nsrun, whose checks hold there
		return nil
	case journal.OpPrivate, journal.OpFile:
		for _, p := range []string{s.Path, s.Old} {
			if p != "" && !o.nodePath(s.NS, p) {
				return fmt.Errorf("%s is recorded at %s, not in the lab's directory: %w", s, p, kernel.ErrNotOurs)
			}
		}
		return nil
	case journal.OpMove: // undone by moving the link back from New to NS
		if err := o.in(s.New, s.Name); err != nil {
			return err
		}
		return o.namespace(s.NS)
	}
	if s.NS != kernel.Host {
		return o.namespace(s.NS)
	}
	switch s.Op {
	case journal.OpUp, journal.OpMTU, journal.OpMAC, journal.OpHairpin, journal.OpAddr, journal.OpAddrDel,
		journal.OpFDB, journal.OpFDBDel, journal.OpShape:
		return o.hostLink(s.Name)
	case journal.OpMaster:
		if err := o.hostLink(s.Name); err != nil || s.Old == "" {
			return err
		}
		return o.hostLink(s.Old) // the bridge it goes back to
	case journal.OpRoute, journal.OpRouteDel:
		routes := []*kernel.Route{s.Route}
		if s.OldRoute != nil {
			routes = append(routes, s.OldRoute)
		}
		for _, r := range routes {
			if r == nil || r.Dev == "" {
				return fmt.Errorf("%s is not on a link of the lab's: %w", s, kernel.ErrNotOurs)
			}
			if err := o.hostLink(r.Dev); err != nil {
				return err
			}
		}
		return nil
	case journal.OpSysctl:
		dev := kernel.SysctlDevice(s.Name)
		if dev == "" {
			return fmt.Errorf("%s is a setting of the machine: %w", s, kernel.ErrNotOurs)
		}
		return o.hostLink(dev)
	}
	// Another package's operation: nsrun makes none in the host.
	return fmt.Errorf("%s in the host namespace: %w", s, kernel.ErrNotOurs)
}

// in checks a link in ns: in the host, by its tag; elsewhere, by the
// namespace's.
func (o *owner) in(ns, link string) error {
	if ns == kernel.Host {
		return o.hostLink(link)
	}
	return o.namespace(ns)
}

// namespace checks that ns is still a namespace of the lab's: its lo
// carries the tag.
func (o *owner) namespace(ns string) error {
	if ns == kernel.Host {
		return nil
	}
	if err, ok := o.netns[ns]; ok {
		return err
	}
	lo, err := o.k.LinkGet(ns, "lo")
	switch {
	case errors.Is(err, kernel.ErrNotFound):
		err = errGone
	case err != nil:
	case lo.Alias == "" || lo.Alias != o.tag:
		err = fmt.Errorf("netns %q carries tag %q, not %q: %w", ns, lo.Alias, o.tag, kernel.ErrNotOurs)
	}
	o.netns[ns] = err
	return err
}

// hostLink checks that link name of the host namespace carries the tag.
func (o *owner) hostLink(name string) error {
	l, err := o.k.LinkGet(kernel.Host, name)
	if errors.Is(err, kernel.ErrNotFound) {
		return errGone
	}
	if err != nil {
		return err
	}
	if !(kernel.Fingerprint{Alias: o.tag}).Matches(l.Alias, l.MAC) {
		return fmt.Errorf("link %q in netns \"host\" has tag %q, not %q: %w", name, l.Alias, o.tag, kernel.ErrNotOurs)
	}
	return nil
}

// nodePath reports whether path is one the lab keeps for namespace ns:
// beneath LAB/nodes/NS/ of its record directory (see nsexec.Node).
func (o *owner) nodePath(ns, path string) bool {
	lab := o.tag[strings.IndexByte(o.tag, ':')+1:]
	return ns != kernel.Host && lab != "" && filepath.IsAbs(path) && filepath.Clean(path) == path &&
		strings.Contains(path, "/"+lab+"/nodes/"+ns+"/")
}
