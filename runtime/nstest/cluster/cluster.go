package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A Cluster is a set of simulated machines joined by an underlay network.
type Cluster struct {
	// Dir is a private temporary directory (mode 0700) that holds the
	// cluster's keys, configurations and logs; Close removes it.
	Dir string
	// SSHConfig is the path of an ssh_config file with a Host entry per
	// machine with sshd, by its name (ssh -F SSHConfig m1 COMMAND): root
	// logs in to its address with the cluster's key only, in batch mode,
	// within 3 seconds, and checks its host key strictly against the
	// cluster's known_hosts only (by the name, HostKeyAlias).
	SSHConfig string
	// Coordinator is a machine without sshd, from which a test runs the
	// nsrun that coordinates the others.
	Coordinator *Machine
	// Machines are m1..mN, each running sshd.
	Machines []*Machine

	t        testing.TB
	lifeline *os.File // while it is open, the machines live
	procs    []*process
	ul       *process // the underlay's namespace
	hostKeys map[string]string
	bad      int // fresh keys BadHostKey made
	once     sync.Once
}

// Options say what cluster Start builds.
type Options struct {
	// Machines is how many machines with sshd there are.
	Machines int
	// Nsrun is the path of an nsrun binary that each machine (the
	// coordinator too) finds as /usr/local/bin/nsrun; "" for none. With
	// one, each machine's /usr/local/bin is a directory of its own, with
	// links to what the host's holds but an nsrun.
	Nsrun string
	// Without names the machines that get no nsrun, to test a machine
	// without it.
	Without []string
}

const (
	// coordName is the coordinator's name.
	coordName = "coord"
	// stdPath is the PATH of commands run in a machine.
	stdPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// bridge is the underlay's bridge, and the name of each machine's link
	// to it.
	bridge = "ul0"
	// readyTimeout is how long Start waits for a machine's sshd.
	readyTimeout = 10 * time.Second
)

// addr is the underlay address of the i-th machine (the coordinator's is
// the 0th): 10.250.0.(1+i).
func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 250, 0, byte(1 + i)}) }

// Start builds a cluster for t, with the coordinator and o.Machines machines
// running sshd, and returns it once each one's sshd takes SSH connections
// from the coordinator. It registers Close with t.Cleanup, and fails t if
// the cluster cannot be built.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Machines < 0 || o.Machines > 253 {
		t.Fatalf("cluster: %d machines: there is room for 0 to 253", o.Machines)
	}
	dir, err := os.MkdirTemp("", "nsrun-cluster-")
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs // TMPDIR may be relative
	}
	c := &Cluster{Dir: dir, t: t, hostKeys: map[string]string{}}
	t.Cleanup(c.Close)
	if err := c.start(o); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return c
}

// start builds the cluster in c.Dir.
func (c *Cluster) start(o Options) error {
	if err := os.Chmod(c.Dir, 0o700); err != nil { // whatever the umask
		return err
	}
	names := []string{coordName}
	for i := 1; i <= o.Machines; i++ {
		names = append(names, "m"+strconv.Itoa(i))
	}
	if err := c.check(&o, names); err != nil {
		return err
	}
	if err := c.clientKey(); err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close() // the machines have it
	c.lifeline = w
	if err := c.underlay(r); err != nil {
		return err
	}
	for i, name := range names {
		nsrun := o.Nsrun
		if slices.Contains(o.Without, name) {
			nsrun = ""
		}
		m, err := c.machine(name, addr(i), r, o.Nsrun != "", nsrun)
		if err != nil {
			return fmt.Errorf("machine %s: %w", name, err)
		}
		if i == 0 {
			c.Coordinator = m
		} else {
			c.Machines = append(c.Machines, m)
		}
	}
	if err := c.writeSSHConfig(); err != nil {
		return err
	}
	sshds := make([]*process, len(c.Machines))
	for i, m := range c.Machines {
		if sshds[i], err = c.sshd(m); err != nil {
			return fmt.Errorf("machine %s: %w", m.Name, err)
		}
	}
	for i, m := range c.Machines {
		if err := c.waitSSH(m, sshds[i]); err != nil {
			return fmt.Errorf("machine %s: %w", m.Name, err)
		}
	}
	return nil
}

// check makes o's paths absolute and checks them, that o.Without has only
// names of machines, and that c.Dir can be written into the configuration
// files as it is.
func (c *Cluster) check(o *Options, names []string) error {
	if strings.ContainsAny(c.Dir, " \t\n\"'\\%#") {
		return fmt.Errorf("its directory %q has characters ssh's configuration would misread: set TMPDIR to another", c.Dir)
	}
	for _, prefix := range []string{"/run", "/proc", "/sys", "/var/log", "/usr/local/bin"} {
		if c.Dir == prefix || strings.HasPrefix(c.Dir, prefix+"/") {
			return fmt.Errorf("its directory %s is under %s, which the machines have their own of: set TMPDIR to another", c.Dir, prefix)
		}
	}
	for _, name := range o.Without {
		if !slices.Contains(names, name) {
			return fmt.Errorf("Options.Without names %q, not a machine of the cluster", name)
		}
	}
	if o.Nsrun == "" {
		return nil
	}
	bin, err := filepath.Abs(o.Nsrun)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(bin); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("Options.Nsrun %s is not a file", bin)
	}
	o.Nsrun = bin
	return nil
}

// Machine returns the machine called name ("coord" for the coordinator); it
// fails the test if there is none.
func (c *Cluster) Machine(name string) *Machine {
	c.t.Helper()
	if c.Coordinator != nil && c.Coordinator.Name == name {
		return c.Coordinator
	}
	for _, m := range c.Machines {
		if m.Name == name {
			return m
		}
	}
	c.t.Fatalf("cluster: no machine %q", name)
	return nil
}

// Close ends every machine, and with it every process in it, ends the
// underlay, and removes c.Dir. It may be called again.
func (c *Cluster) Close() {
	c.once.Do(func() {
		if c.lifeline != nil {
			c.lifeline.Close() // what Close would miss ends with it
		}
		// Each machine's init is its PID namespace's process 1: when it
		// ends, the kernel ends every process in the namespace.
		for _, p := range c.procs {
			if p.init {
				p.cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		for _, p := range c.procs {
			<-p.done
		}
		os.RemoveAll(c.Dir)
	})
}

// A process is one the cluster started, and waits for.
type process struct {
	cmd  *exec.Cmd
	init bool // the process 1 of a machine, or the underlay's holder
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

// spawn starts cmd and has the cluster wait for it.
func (c *Cluster) spawn(cmd *exec.Cmd, init bool) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, init: init, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return p, nil
}

// underlay starts the underlay's namespace, a network namespace of its own
// held by a shell that ends when the lifeline closes, and makes its bridge.
func (c *Cluster) underlay(lifeline *os.File) error {
	cmd := exec.Command("sh", "-c", "read _")
	cmd.Stdin = lifeline
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	p, err := c.spawn(cmd, true)
	if err != nil {
		return fmt.Errorf("starting the underlay: %w", err)
	}
	c.ul = p
	if err := c.underlayIP("link", "add", bridge, "type", "bridge"); err != nil {
		return err
	}
	return c.underlayIP("link", "set", bridge, "up")
}

// underlayIP runs ip with args in the underlay's namespace.
func (c *Cluster) underlayIP(args ...string) error {
	pid := strconv.Itoa(c.ul.cmd.Process.Pid)
	cmd := exec.Command("nsenter", append([]string{"-t", pid, "-n", "ip"}, args...)...)
	cmd.Env = []string{"PATH=" + stdPath}
	return run(cmd)
}

// run runs cmd, and returns what it printed with its error.
func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// waitSSH waits until the coordinator can run a command on m over SSH, or
// sshd, p, ends.
func (c *Cluster) waitSSH(m *Machine, p *process) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		cmd := c.Coordinator.Command("ssh", "-F", c.SSHConfig, m.Name, "true")
		err := run(cmd)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("sshd ended (%v): %s", p.err, c.log(m.Name+"-sshd.log"))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd takes no connection after %v: %w; its log: %s", readyTimeout, err, c.log(m.Name+"-sshd.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// log returns what the log file name in c.Dir holds.
func (c *Cluster) log(name string) string {
	data, err := os.ReadFile(filepath.Join(c.Dir, name))
	if errors.Is(err, os.ErrNotExist) || len(data) == 0 {
		return "(empty)"
	}
	return strings.TrimSpace(string(data))
}
