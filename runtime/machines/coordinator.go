package machines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/store"
)

// DefaultLease is how long a part goes on without word from its
// coordinator before it rolls itself back.
const DefaultLease = 30 * time.Second

// connectTimeout bounds reaching a machine and its hello.
const connectTimeout = 10 * time.Second

// A Coordinator is the coordinating run's engine.Across: it holds an SSH
// connection to each machine's part, and is the parts' meeting point.
type Coordinator struct {
	lab       string
	parts     []*part
	underlays map[string]string
	lease     time.Duration
	at        int
	failed    error // the first failure of a part: every other is aborted
	stop      chan struct{}
	wg        sync.WaitGroup
}

// part is one machine's part, as the coordinator sees it.
type part struct {
	m      journal.Machine
	pos    string // the recipe's machine() call
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	c      *conn
	hello  *hello
	result *result
	over   bool // its result came, or its connection closed
}

// Start connects to the lab's machines, the parts of a plan (its steps of
// op "part"), checks each (nsrun there, of version, as root) and sends it
// the bundle b, with every machine's underlay address. It changes nothing
// anywhere; an error names the recipe's machine() call.
func Start(ctx context.Context, parts []journal.Step, b Bundle, version string, lease time.Duration) (*Coordinator, error) {
	if lease <= 0 {
		lease = DefaultLease
	}
	c := &Coordinator{lab: b.Lab, underlays: map[string]string{}, lease: lease, stop: make(chan struct{})}
	for _, s := range parts {
		c.parts = append(c.parts, &part{m: *s.Machine, pos: s.Pos})
	}
	errs := make([]error, len(c.parts))
	var wg sync.WaitGroup
	for i, p := range c.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.connect(version)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	for _, p := range c.parts {
		fields := strings.Fields(p.hello.SSH)
		c.underlays[p.m.Name] = p.m.Underlay
		if p.m.Underlay == "" && len(fields) == 4 {
			c.underlays[p.m.Name] = fields[2] // the address ssh reached
		}
		if c.underlays[engine.Local] == "" && len(fields) == 4 {
			c.underlays[engine.Local] = fields[0] // this machine's, as the machine saw it
		}
	}
	b.Lease = lease.Seconds()
	b.Underlays = c.underlays
	for _, p := range c.parts {
		pb := b
		pb.Machine = p.m.Name
		if err := p.c.send(message{Bundle: &pb}); err != nil {
			c.Close()
			return nil, p.fail(err)
		}
	}
	c.wg.Add(1)
	go c.renew()
	return c, nil
}

// connect starts nsrun's part on the machine and reads its hello.
func (p *part) connect(version string) error {
	p.cmd = sshCommand(p.m, connectTimeout, "part")
	p.stderr = &tailBuffer{max: 4096}
	p.cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return p.fail(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return p.fail(err)
	}
	if err := p.cmd.Start(); err != nil {
		return p.fail(fmt.Errorf("running ssh: %w", err))
	}
	p.c = newConn(stdout, p.stdin)
	select {
	case m, ok := <-p.c.in:
		switch {
		case !ok || m.Hello == nil:
			return p.fail(p.exitErr())
		case m.Hello.Version != version:
			return p.fail(fmt.Errorf("it runs nsrun %s, not this one's %s", m.Hello.Version, version))
		case m.Hello.UID != 0:
			return p.fail(fmt.Errorf("nsrun runs there as uid %d, not root: a part changes the machine's network", m.Hello.UID))
		}
		p.hello = m.Hello
		return nil
	case <-time.After(2 * connectTimeout):
		return p.fail(errors.New("no answer"))
	}
}

// exitErr says why the part's ssh ended before it spoke.
func (p *part) exitErr() error {
	err := p.cmd.Wait()
	p.cmd = nil
	msg := strings.TrimSpace(p.stderr.String())
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == 127:
		return fmt.Errorf("nsrun is not installed there (%s)", firstLine(msg))
	case errors.As(err, &ee) && ee.ExitCode() == 255:
		return fmt.Errorf("ssh: %s", firstLine(msg))
	case msg != "":
		return errors.New(firstLine(msg))
	case err != nil:
		return err
	}
	return errors.New("it ended without a word")
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Warning: Permanently added") {
			return l
		}
	}
	return s
}

// fail is err, naming the part's machine and its recipe line.
func (p *part) fail(err error) error {
	return fmt.Errorf("%s: machine %q (%s): %w", p.pos, p.m.Name, p.m.SSH, err)
}

// renew renews each part's lease until the coordinator is done.
func (c *Coordinator) renew() {
	defer c.wg.Done()
	t := time.NewTicker(max(c.lease/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			for _, p := range c.parts {
				if !p.over {
					p.c.send(message{Lease: c.lease.Seconds()})
				}
			}
		}
	}
}

func (c *Coordinator) Machine() string { return engine.Local }

func (c *Coordinator) Underlay(m string) (netip.Addr, error) { return underlayOf(c.underlays, m) }

// next is part p's next message; a part whose connection closed, or that
// sent its result, fails.
func (c *Coordinator) next(p *part) (message, error) {
	m, ok := <-p.c.in
	switch {
	case !ok:
		p.over = true
		return m, p.fail(fmt.Errorf("lost the connection: %v", p.lost()))
	case m.Result != nil:
		p.result, p.over = m.Result, true
		if m.Result.Err != "" {
			return m, p.fail(errors.New(m.Result.Err))
		}
		return m, p.fail(errors.New("its part ended early"))
	case m.Done && m.Err != "":
		return m, p.fail(errors.New(m.Err))
	}
	return m, nil
}

// lost says why a part's connection closed.
func (p *part) lost() string {
	if msg := firstLine(strings.TrimSpace(p.stderr.String())); msg != "" {
		return msg
	}
	if p.c.err != nil {
		return p.c.err.Error()
	}
	return "ssh ended"
}

// Ready checks this machine for the steps of its own part, then waits
// until every part has checked its machine and recorded its lab.
func (c *Coordinator) Ready(steps []journal.Step) error {
	if err := checkMachine(engine.Local, c.underlays, steps); err != nil {
		return err
	}
	for _, p := range c.parts {
		m, err := c.next(p)
		if err == nil && !m.Ready {
			err = p.fail(errors.New("it is not ready"))
		}
		if err != nil {
			c.failed = err
			return err
		}
	}
	return nil
}

// Begin lets machine m's part begin: its step is in the coordinator's
// journal.
func (c *Coordinator) Begin(m journal.Machine) error {
	for _, p := range c.parts {
		if p.m.Name == m.Name {
			if err := p.c.send(message{Go: true}); err != nil {
				return p.fail(err)
			}
			return nil
		}
	}
	return fmt.Errorf("machine %q was not connected before the run (declare every machine before any check)", m.Name)
}

func (c *Coordinator) Exchange(mine []byte) ([][]byte, error) {
	if c.failed != nil {
		return nil, c.failed
	}
	c.at++
	all := [][]byte{mine}
	for _, p := range c.parts {
		m, err := c.next(p)
		if err == nil && m.At != c.at {
			err = p.fail(fmt.Errorf("the lab's machines diverged: it is at observation %d, the coordinator at %d", m.At, c.at))
		}
		if err != nil {
			c.failed = err
			return nil, err
		}
		all = append(all, m.Data)
	}
	for _, p := range c.parts {
		if err := p.c.send(message{At: c.at, All: all}); err != nil {
			c.failed = p.fail(err)
			return nil, c.failed
		}
	}
	return all, nil
}

// Finish waits for every part's recipe to end; if all and this one ended
// well, it commits the lab on every machine, else aborts it everywhere
// and waits (within the lease) for each part's rollback.
func (c *Coordinator) Finish(err error, remove bool) (bool, error) {
	if err == nil && c.failed == nil {
		for _, p := range c.parts {
			if _, perr := c.next(p); perr != nil {
				c.failed = perr
				break
			}
		}
	}
	if err == nil {
		err = c.failed
	}
	verdict := message{Commit: true, Remove: remove}
	if err != nil {
		msg, pos := engine.ErrorAt(err)
		if pos != "" {
			msg = pos + ": " + msg
		}
		verdict = message{Abort: "the lab failed elsewhere: " + msg}
	}
	for _, p := range c.parts {
		if !p.over {
			p.c.send(verdict)
		}
	}
	c.wait(c.lease + 30*time.Second)
	if err != nil {
		return false, err
	}
	for _, p := range c.parts {
		switch {
		case p.result == nil || p.result.Err != "":
			return false, p.fail(errors.New("no word that its part is up"))
		case remove && p.result.State == store.LabRemoved && len(p.result.Failed) == 0:
			removedPart(p.m, c.lab) // its undo has nothing to do
		}
	}
	return remove, nil
}

// wait waits, until d has passed, for each part's result.
func (c *Coordinator) wait(d time.Duration) {
	deadline := time.After(d)
	for _, p := range c.parts {
		for !p.over {
			select {
			case m, ok := <-p.c.in:
				if !ok {
					p.over = true
				} else if m.Result != nil {
					p.result, p.over = m.Result, true
				}
			case <-deadline:
				return
			}
		}
	}
}

// Parts describes how each part ended, for the run's report.
func (c *Coordinator) Parts() []string {
	var out []string
	for _, p := range c.parts {
		switch {
		case p.result == nil:
			out = append(out, fmt.Sprintf("machine %q: no word of its part (it rolls back by itself when its lease runs out)", p.m.Name))
		case p.result.State == store.LabRemoved:
			out = append(out, fmt.Sprintf("machine %q: %d changes made, %d undone: nothing left", p.m.Name, p.result.Made, p.result.Undone))
		default:
			out = append(out, fmt.Sprintf("machine %q: %d changes, lab %s", p.m.Name, p.result.Made, p.result.State))
		}
	}
	return out
}

// Close ends the connections: a part not committed rolls back.
func (c *Coordinator) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
	for _, p := range c.parts {
		if p.stdin != nil {
			p.stdin.Close()
		}
	}
	for _, p := range c.parts {
		if p.cmd == nil || p.cmd.Process == nil {
			continue
		}
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(c.lease + 30*time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		p.cmd = nil
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
