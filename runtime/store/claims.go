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
	"sync"

	"github.com/nsrun/nsrun/runtime/kernel"
	"golang.org/x/sys/unix"
)

// Names that live outside a lab's own namespaces are global: namespace
// names, and link names in the host namespace. Before it changes anything,
// a run claims every such name its plan will create, all at once under the
// state directory's lock; a run whose names overlap a live lab's fails there,
// naming the conflict, with nothing changed. A name the plan did not
// foresee (one computed from what the recipe observed) is claimed as the
// run makes it (see claimer); a session claims each name so. The claims are
// one file, STATE/.claims, a line "KIND:NAME LAB" each, sorted (a lab's name
// never starts with a dot), rewritten whole under the lock and put in place
// by a rename: one file however many names a lab has (a file a name cost
// half a millisecond each where the state directory is not a tmpfs).
// Claims of earlier versions, files STATE/.claim:KIND:NAME holding the
// lab's name, are still honoured and released.

const claimsFile = ".claims"

func claimPath(stateDir, claim string) string { return filepath.Join(stateDir, ".claim:"+claim) }

// ClaimName is the claim of a namespace or of a host-namespace link.
func ClaimName(kind, name string) string { return kind + ":" + name }

// readClaims returns the claims file's claims, name to lab.
func readClaims(stateDir string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, claimsFile))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	claims := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if name, lab, ok := strings.Cut(line, " "); ok {
			claims[name] = lab
		}
	}
	return claims, nil
}

// writeClaims replaces the claims file with claims: written aside, then
// renamed over it, so that a reader sees the old or the new, whole.
func writeClaims(stateDir string, claims map[string]string) error {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(claims)) {
		b.WriteString(name + " " + claims[name] + "\n")
	}
	path := filepath.Join(stateDir, claimsFile)
	if len(claims) == 0 { // no file of nsrun's outlives its labs
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// ClaimOwner returns the lab holding claim, or "".
func ClaimOwner(stateDir, claim string) string {
	claims, _ := readClaims(stateDir)
	if lab, ok := claims[claim]; ok {
		return lab
	}
	lab, _ := readClaim(claimPath(stateDir, claim))
	return lab
}

// LockState takes the state directory's lock (a flock on the directory
// itself: no lock file to outlive the labs), for making lab records and
// claims atomically with respect to other nsruns. Its release is returned.
func LockState(stateDir string) (func(), error) {
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

// Claim claims names for lab, all or none. A claim held by a lab whose
// record is gone is stale and taken over. Call it with the state locked.
func Claim(stateDir, lab string, names []string) error {
	sort.Strings(names)
	claims, err := readClaims(stateDir)
	if err != nil {
		return err
	}
	var stale []string // earlier versions' files to remove
	for _, n := range names {
		owner, ok := claims[n]
		legacy := false
		if !ok {
			if o, err := readClaim(claimPath(stateDir, n)); err == nil {
				owner, legacy = o, true
			}
		}
		if owner == "" || owner == lab {
			continue
		}
		if _, err := os.Stat(filepath.Join(stateDir, owner, "lab.json")); errors.Is(err, os.ErrNotExist) {
			if legacy {
				stale = append(stale, claimPath(stateDir, n))
			}
			continue // stale: its lab is gone
		}
		kind, name, _ := strings.Cut(n, ":")
		return fmt.Errorf("%s %q is taken by lab %q (see `nsrun ls`)", kindWord(kind), name, owner)
	}
	for _, n := range names {
		claims[n] = lab
	}
	if err := writeClaims(stateDir, claims); err != nil {
		return err
	}
	for _, p := range stale {
		os.Remove(p)
	}
	return nil
}

// readClaim returns the lab holding a claim.
func readClaim(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var b []byte
	buf := make([]byte, 256)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return "", &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return string(b), nil
		}
		b = append(b, buf[:n]...)
	}
}

func kindWord(kind string) string {
	if kind == "link" {
		return "link name (host namespace)"
	}
	return kind
}

// release gives up lab's claims on names. Call it with the state locked.
func release(stateDir, lab string, names []string) {
	if len(names) == 0 {
		return
	}
	if claims, err := readClaims(stateDir); err == nil {
		dropped := false
		for _, n := range names {
			if claims[n] == lab {
				delete(claims, n)
				dropped = true
			}
		}
		if dropped {
			writeClaims(stateDir, claims)
		}
	}
	for _, n := range names { // an earlier version's
		path := claimPath(stateDir, n)
		if owner, err := readClaim(path); err == nil && owner == lab {
			os.Remove(path)
		}
	}
}

// claimer is the kernel of a real run or a session: before it creates a
// global name the lab has not claimed — a namespace, or a link in the host
// namespace, made there or moved there — it claims it, under the state
// lock as the claims made before a run are, and looks it up as a name no
// plan foresaw. A run's plan names what the preflight made, and a name
// computed from what the recipe observed (exec_in's output, which the
// preflight makes up) is another in the real run: unclaimed, it could be
// taken by another lab at the same time, and the run, trusting the plan
// (Runtime.Planned), would not look it up. A session claims each name so.
type claimer struct {
	kernel.Kernel
	stateDir string
	lab      *Lab

	mu      sync.Mutex
	claimed map[string]bool
}

// NewClaimer returns k for lab, whose claims so far are lab.Info.Claims.
func NewClaimer(k kernel.Kernel, stateDir string, lab *Lab) *claimer {
	c := &claimer{Kernel: k, stateDir: stateDir, lab: lab, claimed: map[string]bool{}}
	for _, n := range lab.Info.Claims {
		c.claimed[n] = true
	}
	return c
}

func (c *claimer) Unwrap() kernel.Kernel { return c.Kernel }

// need makes sure the lab holds the claim on name (of kind "netns" or
// "link"): if it does not yet, name is looked up (exists), then claimed and
// the claim recorded in the lab's record, all under the state lock.
func (c *claimer) need(kind, name string, exists func() error) error {
	n := ClaimName(kind, name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claimed[n] {
		return nil
	}
	unlock, err := LockState(c.stateDir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := exists(); err != nil {
		return err
	}
	if err := Claim(c.stateDir, c.lab.Info.Name, []string{n}); err != nil {
		return err
	}
	c.lab.Info.Claims = append(c.lab.Info.Claims, n)
	applying := c.lab.Info.State == LabApplying // the change's own, released if it is undone
	if applying {
		c.lab.Info.Applied = append(c.lab.Info.Applied, n)
	}
	if err := c.lab.save(); err != nil {
		c.lab.Info.Claims = c.lab.Info.Claims[:len(c.lab.Info.Claims)-1]
		if applying {
			c.lab.Info.Applied = c.lab.Info.Applied[:len(c.lab.Info.Applied)-1]
		}
		release(c.stateDir, c.lab.Info.Name, []string{n})
		return fmt.Errorf("recording the claim on %s %q: %w", kindWord(kind), name, err)
	}
	c.claimed[n] = true
	return nil
}

// Drop gives up the lab's claims names (an undone change's), as Release
// does, and forgets them.
func (c *claimer) Drop(names []string) error {
	if len(names) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := LockState(c.stateDir)
	if err != nil {
		return err
	}
	defer unlock()
	release(c.stateDir, c.lab.Info.Name, names)
	c.lab.Info.Claims = slices.DeleteFunc(c.lab.Info.Claims, func(n string) bool { return slices.Contains(names, n) })
	for _, n := range names {
		delete(c.claimed, n)
	}
	return nil
}

// hostLink is need for a link name in the host namespace.
func (c *claimer) hostLink(name string) error {
	return c.need("link", name, func() error {
		_, err := c.Kernel.LinkGet(kernel.Host, name)
		switch {
		case err == nil:
			return fmt.Errorf("a link named %q already exists in netns %q; nsrun never adopts an object it did not create", name, kernel.NSArg(kernel.Host))
		case errors.Is(err, kernel.ErrNotFound):
			return nil
		default:
			return err
		}
	})
}

func (c *claimer) NetnsAdd(s kernel.NetnsSpec) (kernel.NetnsID, error) {
	err := c.need("netns", s.Name, func() error {
		ok, err := c.Kernel.NetnsExists(s.Name)
		if err == nil && ok {
			err = fmt.Errorf("netns %q: %w", s.Name, os.ErrExist)
		}
		return err
	})
	if err != nil {
		return kernel.NetnsID{}, err
	}
	return c.Kernel.NetnsAdd(s)
}

func (c *claimer) LinkAdd(s kernel.LinkSpec) error {
	if s.NS == kernel.Host {
		if err := c.hostLink(s.Name); err != nil {
			return err
		}
	}
	if s.Kind == "veth" && s.PeerNS == kernel.Host {
		if err := c.hostLink(s.PeerName); err != nil {
			return err
		}
	}
	return c.Kernel.LinkAdd(s)
}

func (c *claimer) LinkMove(ns, name, to string) error {
	if to == kernel.Host {
		if err := c.hostLink(name); err != nil {
			return err
		}
	}
	return c.Kernel.LinkMove(ns, name, to)
}

// The NAT capability passes through: builtins ask the run's kernel for it
// directly, not through kernel.As.

var errNoNAT = errors.New("this kernel cannot program nftables")

func (c *claimer) NATTable(ns, family, table string) error {
	if n, ok := kernel.As[kernel.NAT](c.Kernel); ok {
		return n.NATTable(ns, family, table)
	}
	return errNoNAT
}

func (c *claimer) NATRule(ns, family, table string, r kernel.NATRule) error {
	if n, ok := kernel.As[kernel.NAT](c.Kernel); ok {
		return n.NATRule(ns, family, table, r)
	}
	return errNoNAT
}

func (c *claimer) NATRuleDel(ns, family, table, comment string) error {
	if n, ok := kernel.As[kernel.NAT](c.Kernel); ok {
		return n.NATRuleDel(ns, family, table, comment)
	}
	return errNoNAT
}

func (c *claimer) NATDelTable(ns, family, table string) error {
	if n, ok := kernel.As[kernel.NAT](c.Kernel); ok {
		return n.NATDelTable(ns, family, table)
	}
	return errNoNAT
}

// Release gives up lab's claims of names, taking the state lock (the
// claims file is rewritten whole). release is Release for a caller that
// holds it.
func Release(stateDir, lab string, names []string) {
	if len(names) == 0 {
		return
	}
	unlock, err := LockState(stateDir)
	if err != nil {
		return
	}
	defer unlock()
	release(stateDir, lab, names)
}
