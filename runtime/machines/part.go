package machines

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/store"
)

// RunPart runs a part's recipe: b's, written under dir, as one part of
// the lab (engine.Run with across), until ctx is cancelled.
type RunPart func(ctx context.Context, b *Bundle, recipe string, across engine.Across) store.Result

// errLost is why a part rolls back when its coordinator is gone.
var errLost = errors.New("lost its coordinator")

// Serve runs this machine's part of a lab across machines, speaking the
// protocol on r and w (ssh's standard input and output): it says hello,
// takes the bundle, writes its files under dir, runs it with run, and
// reports how it ended. A part whose coordinator goes silent for the
// lab's lease, or whose connection closes before the lab is committed,
// rolls its part back.
func Serve(r io.Reader, w io.Writer, version, dir string, run RunPart) error {
	c := newConn(r, w)
	if err := c.send(message{Hello: &hello{Version: version, UID: os.Getuid(), SSH: os.Getenv("SSH_CONNECTION")}}); err != nil {
		return err
	}
	var b *Bundle
	select {
	case m, ok := <-c.in:
		if !ok {
			return nil // the coordinator only asked who we are
		}
		if b = m.Bundle; b == nil {
			return errors.New("the coordinator sent no recipe")
		}
	case <-time.After(time.Minute):
		return errors.New("the coordinator sent no recipe")
	}
	files, err := os.MkdirTemp(dir, ".part-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(files)
	if err := writeBundle(files, b); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	p := &partAcross{b: b, c: c, msgs: make(chan message, 16), ctx: ctx, files: files}
	go p.listen(cancel)
	res := run(ctx, b, filepath.Join(files, b.Recipe), p)
	out := &result{State: res.State, Made: here(res.Made), Undone: here(res.Undone)}
	for _, f := range res.Failed {
		out.Failed = append(out.Failed, p.unlocal(f.Error()))
	}
	if res.Err != nil {
		out.Err = p.unlocal(res.Err.Error())
	}
	c.send(message{Result: out}) // a coordinator gone cannot hear it
	return nil
}

// writeBundle writes b's files under dir, refusing a path that leaves it.
func writeBundle(dir string, b *Bundle) error {
	for name, data := range b.Files {
		clean := filepath.Clean(name)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("the bundle's file %q is outside the recipe's directory", name)
		}
		path := filepath.Join(dir, clean)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// partAcross is a part's engine.Across: the coordinator is the other end
// of its connection.
type partAcross struct {
	b     *Bundle
	c     *conn
	msgs  chan message // the coordinator's, but its lease renewals
	ctx   context.Context
	files string
	at    int
}

// listen passes the coordinator's messages on and keeps the lease: word
// within it renews it; none, or the connection's end, cancels the run.
func (p *partAcross) listen(cancel context.CancelCauseFunc) {
	lease := time.Duration(p.b.Lease * float64(time.Second))
	if lease <= 0 {
		lease = DefaultLease
	}
	timer := time.NewTimer(lease)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-p.c.in:
			if !ok {
				cancel(fmt.Errorf("%w: its connection closed", errLost))
				close(p.msgs)
				return
			}
			timer.Reset(lease)
			if m.Lease > 0 {
				continue
			}
			p.msgs <- m
		case <-timer.C:
			cancel(fmt.Errorf("%w: no word from it for the lab's lease (%s)", errLost, lease))
			return
		}
	}
}

// next is the coordinator's next message, or why there is none.
func (p *partAcross) next() (message, error) {
	select {
	case m, ok := <-p.msgs:
		if !ok {
			return message{}, context.Cause(p.ctx)
		}
		if m.Abort != "" {
			return m, errors.New(m.Abort)
		}
		return m, nil
	case <-p.ctx.Done():
		return message{}, context.Cause(p.ctx)
	}
}

// unlocal puts the coordinator's recipe directory in place of the part's
// copy of it, in a message.
func (p *partAcross) unlocal(s string) string {
	return strings.ReplaceAll(s, p.files, p.b.Dir)
}

func (p *partAcross) Machine() string { return p.b.Machine }

func (p *partAcross) Underlay(m string) (netip.Addr, error) { return underlayOf(p.b.Underlays, m) }

func underlayOf(underlays map[string]string, m string) (netip.Addr, error) {
	a, err := netip.ParseAddr(underlays[m])
	if err != nil {
		return netip.Addr{}, fmt.Errorf("machine %q has no underlay address", m)
	}
	return a, nil
}

func (p *partAcross) Ready(steps []journal.Step) error {
	if err := checkMachine(p.b.Machine, p.b.Underlays, steps); err != nil {
		return err
	}
	if err := p.c.send(message{Ready: true}); err != nil {
		return fmt.Errorf("%w: %v", errLost, err)
	}
	m, err := p.next()
	if err != nil {
		return err
	}
	if !m.Go {
		return errors.New("the coordinator said neither go nor abort")
	}
	return nil
}

func (p *partAcross) Begin(journal.Machine) error { return nil }

func (p *partAcross) Exchange(mine []byte) ([][]byte, error) {
	p.at++
	if err := p.c.send(message{At: p.at, Data: mine}); err != nil {
		return nil, fmt.Errorf("%w: %v", errLost, err)
	}
	m, err := p.next()
	if err != nil {
		return nil, err
	}
	if m.At != p.at {
		return nil, fmt.Errorf("the lab's machines diverged: at observation %d, the coordinator answered %d", p.at, m.At)
	}
	return m.All, nil
}

func (p *partAcross) Finish(err error, _ bool) (bool, error) {
	done := message{Done: true}
	if err != nil {
		msg, pos := engine.ErrorAt(err)
		done.Err = p.unlocal(msg)
		if pos != "" {
			done.Err = p.unlocal(pos) + ": " + done.Err
		}
	}
	if serr := p.c.send(done); serr != nil && err == nil {
		return false, fmt.Errorf("%w: %v", errLost, serr)
	}
	if err != nil {
		return false, err
	}
	m, err := p.next()
	if err != nil {
		return false, err
	}
	if !m.Commit {
		return false, errors.New("the coordinator did not commit the lab")
	}
	return m.Remove, nil
}

// checkMachine checks, before any change, that this machine can take its
// part: its underlay address is its own, and no VXLAN of the machine's
// already uses a VNI of the lab's (see the steps' VNI).
func checkMachine(machine string, underlays map[string]string, steps []journal.Step) error {
	vnis := map[int]journal.Step{}
	for _, s := range steps {
		if s.Op == journal.OpLink && s.VNI != 0 && !s.Away {
			vnis[s.VNI] = s
		}
	}
	if len(vnis) == 0 {
		return nil
	}
	u, err := underlayOf(underlays, machine)
	if err != nil {
		return err
	}
	if !ownAddress(u) {
		return fmt.Errorf("machine %q: underlay %s is not an address of the machine's", machine, u)
	}
	have, err := hostVxlans()
	if err != nil {
		return fmt.Errorf("machine %q: listing its VXLANs: %w", machine, err)
	}
	for _, h := range have {
		if s, ok := vnis[h.vni]; ok {
			return fmt.Errorf("%s: %s: VNI %d is already used by machine %q's vxlan %q (%s)", s.Pos, s, h.vni, machine, h.name, h.where)
		}
	}
	return nil
}

// ownAddress reports whether a is an address of one of this namespace's
// links.
func ownAddress(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if n, ok := x.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a.Unmap() {
				return true
			}
		}
	}
	return false
}

// here counts the steps of this machine's.
func here(steps []journal.Step) int {
	n := 0
	for _, s := range steps {
		if !s.Away {
			n++
		}
	}
	return n
}
