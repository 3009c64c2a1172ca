package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/store"
	"go.starlark.net/starlark"
	"golang.org/x/sys/unix"
)

// ExecResult is what a foreground command did.
type ExecResult struct {
	RC             int
	Stdout, Stderr string
	TimedOut       bool
	Planned        bool // not run: a recording kernel's (a plan's) assumed result, rc 0 and no output
}

// Exec runs argv in ns as `ip netns exec` would and waits for it, for at most
// timeout: then its process group gets SIGTERM and, after StopGrace, SIGKILL.
// It returns when the command exits: a background child it leaves (`cmd &`)
// goes on as a process of the lab, and may write on in its output, which is
// read as far as it got when the command exited.
func (rt *Runtime) Exec(ctx context.Context, ns string, argv []string, stdin string, timeout time.Duration) (ExecResult, error) {
	k, err := rt.Kernel() // the changes queued before are made
	if err != nil {       // nothing runs in a lab whose making failed
		return ExecResult{}, err
	}
	if err := rt.Operational(ctx, false); err != nil { // a command may probe the network
		return ExecResult{}, err
	}
	cmd := rt.command(ns, argv)
	// Files, not pipes: the command is waited for, not whoever inherits its
	// output (a pipe would hold Wait until a background child exited).
	stdout, err := memFile("stdout")
	if err != nil {
		return ExecResult{}, err
	}
	defer stdout.Close()
	stderr, err := memFile("stderr")
	if err != nil {
		return ExecResult{}, err
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if stdin != "" {
		in, err := memFile("stdin")
		if err != nil {
			return ExecResult{}, err
		}
		defer in.Close()
		if _, err := in.WriteString(stdin); err != nil {
			return ExecResult{}, err
		}
		if _, err := in.Seek(0, io.SeekStart); err != nil {
			return ExecResult{}, err
		}
		cmd.Stdin = in
	}
	if err := k.Start(ns, cmd); err != nil {
		return ExecResult{}, err
	}
	if cmd.Process == nil { // a recording kernel starts nothing
		return ExecResult{Planned: true}, nil
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var res ExecResult
	select {
	case err = <-done:
	case <-timer.C:
		res.TimedOut = true
		err = endGroup(cmd.Process.Pid, done)
	case <-ctx.Done():
		endGroup(cmd.Process.Pid, done)
		return ExecResult{}, context.Cause(ctx)
	}
	res.Stdout, res.Stderr = readAll(stdout), readAll(stderr)
	res.RC, err = nsexec.ExitCode(err)
	return res, err
}

// memFile returns a file in memory (no path anyone can reach) for a
// command's output.
func memFile(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate("nsrun-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("making a file for the command's %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// readAll reads what a command wrote to f so far.
func readAll(f *os.File) string {
	b, _ := io.ReadAll(io.NewSectionReader(f, 0, 1<<62))
	return string(b)
}

// endGroup ends a foreground command's process group and returns how the
// command ended.
func endGroup(pgid int, done <-chan error) error {
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case err := <-done:
		return err
	case <-time.After(proc.StopGrace):
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	return <-done
}

// SpawnOptions say how to start a background process.
type SpawnOptions struct {
	Name string   // what ls, inspect, check, logs and messages call it; "": argv[0]'s base name
	Env  []string // added to its environment
	Cwd  string   // where it starts, as the node shows it; "": where nsrun runs
	// Sum is what makes the process the one it is, for an apply (see
	// journal.Step.Sum); "": its command, environment and directory. A
	// builtin whose command holds what only a run knows (a lease, a
	// socket's path) names what it asks instead.
	Sum string
}

// A Spawned is a background process the run started.
type Spawned struct {
	Pid  int
	Name string
	Log  string // its standard output and error ("" if not started: a plan)
	// Exited receives how the process ended, once (nil if not started).
	Exited <-chan error
}

// Spawn starts argv in the background in ns, its output going to a log in
// the lab's directory, journals it, and returns it. It is stopped at
// teardown and on rollback.
func (rt *Runtime) Spawn(thread *starlark.Thread, ns string, argv []string, o SpawnOptions) (*Spawned, error) {
	step := rt.procStep(ns, argv, &o)
	sp := &Spawned{Name: o.Name}
	if a, ok := rt.adopt(step); ok { // the lab has it running: the same command, environment and directory
		sp.Pid, sp.Log = a.Pid, a.Path
		return sp, nil
	}
	if err := rt.Sync(); err != nil {
		return nil, err
	}
	err := rt.change(thread, step, func(k kernel.Kernel, s *journal.Step) error {
		exited, err := rt.start(k, s)
		sp.Pid, sp.Log, sp.Exited = s.Pid, s.Path, exited
		return err
	})
	return sp, err
}

// start starts the process of step s (see procStep), its output going to
// s.Path, and fills in its pid and start time. A recording kernel starts
// nothing (and exited is nil).
func (rt *Runtime) start(k kernel.Kernel, s *journal.Step) (exited <-chan error, err error) {
	cmd := rt.command(s.NS, s.Cmd.Argv)
	cmd.Env = append(cmd.Env, s.Cmd.Env...)
	if s.Cmd.Cwd != "" {
		cmd.Env = append(cmd.Env, nsexec.CwdEnv+"="+s.Cmd.Cwd)
	}
	if _, planning := kernel.As[kernel.Planner](k); !planning {
		log, err := openLog(s.Path)
		if err != nil {
			return nil, err
		}
		defer log.Close() // the child has its own
		cmd.Stdout, cmd.Stderr = log, log
	}
	if err := k.Start(s.NS, cmd); err != nil {
		return nil, err
	}
	if cmd.Process == nil {
		return nil, nil
	}
	pid := cmd.Process.Pid
	start, err := proc.StartTime(pid)
	if err != nil {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
		return nil, fmt.Errorf("reading the start time of %d: %w", pid, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }() // reaped, so a stopped process leaves no zombie
	s.Pid, s.Start = pid, start
	return done, nil
}

// restart starts again, as they were started, the lab's processes whose
// stops (since mark) a rollback undid, and gives their steps in the
// journal the new pids: an apply that stopped a process and then failed
// leaves it running, as before.
func (rt *Runtime) restart(stops []journal.Step) []error {
	var errs []error
	steps := rt.Journal.Steps()
	for _, stop := range slices.Backward(stops) {
		i := slices.IndexFunc(steps, func(s journal.Step) bool {
			return s.Op == journal.OpProc && s.Pid == stop.Pid && s.Start == stop.Start
		})
		if i < 0 || proc.Running(stop.Pid, stop.Start) {
			continue
		}
		s := steps[i]
		if s.Cmd == nil {
			errs = append(errs, fmt.Errorf("%s (%s): not started again: recorded by an older nsrun, without its command", s, s.Pos))
			continue
		}
		if _, err := rt.start(rt.k, &s); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): starting it again: %w", s, s.Pos, err))
			continue
		}
		if err := rt.Journal.Update(i, s); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): recording it: %w", s, s.Pos, err))
		}
	}
	return errs
}

// procStep is the step of starting argv in ns (before it starts).
func (rt *Runtime) procStep(ns string, argv []string, o *SpawnOptions) journal.Step {
	if o.Name == "" {
		o.Name = filepath.Base(argv[0])
	}
	if o.Sum == "" {
		o.Sum = Sum(append(append(slices.Clone(argv), "\x00env"), append(o.Env, "\x00cwd", o.Cwd)...)...)
	}
	step := journal.Step{Op: journal.OpProc, NS: ns, Name: o.Name, Sum: o.Sum, Cmd: &journal.Command{Argv: argv, Env: o.Env, Cwd: o.Cwd}}
	if rt.Dir != "" {
		step.Path = rt.LogPath(ns, o.Name)
	}
	return step
}

// Running returns, in an apply, the lab's process that Spawn of o.Name
// and o.Sum in ns would take as running (see Adopt), taking it: a builtin
// that starts a process its own way (and waits for it) asks first.
func (rt *Runtime) Running(ns string, o SpawnOptions) (*Spawned, bool) {
	if o.Sum == "" {
		return nil, false
	}
	step := rt.procStep(ns, nil, &o)
	if !rt.WouldAdopt(step) { // Spawn counts the ask
		return nil, false
	}
	a, ok := rt.adopt(step)
	if !ok {
		return nil, false
	}
	return &Spawned{Pid: a.Pid, Name: o.Name, Log: a.Path}, true
}

// Sum hashes words, for Step.Sum.
func Sum(words ...string) string {
	h := sha256.New()
	for _, w := range words {
		fmt.Fprintf(h, "%d:%s", len(w), w)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// LogPath is where the log of the background process name in ns goes.
func (rt *Runtime) LogPath(ns, name string) string {
	return filepath.Join(rt.Dir, "logs", kernel.NSArg(ns), name+".log")
}

// openLog opens a process's log for appending: a process started again
// under its name adds to it. With no path (no lab directory) the output
// is dropped.
func openLog(path string) (*os.File, error) {
	if path == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// Stopped journals that the recipe stopped its process pid on purpose:
// check no longer expects it to run.
func (rt *Runtime) Stopped(thread *starlark.Thread, pid int) error {
	for _, s := range rt.Journal.Steps() {
		if s.Op == journal.OpProc && s.Pid == pid {
			return rt.Change(thread, journal.Step{Op: journal.OpStop, NS: s.NS, Name: s.Name, Pid: s.Pid, Start: s.Start}, func(kernel.Kernel, *journal.Step) error {
				return proc.Stop(s.Pid, s.Start)
			})
		}
	}
	return fmt.Errorf("process %d was not started by this lab", pid)
}

// processTag is the value of ProcessTagEnv for this run's lab.
func (rt *Runtime) processTag() string {
	state := ""
	if rt.Dir != "" {
		state = filepath.Dir(rt.Dir)
	}
	return store.ProcessTag(rt.Lab, rt.ID, state)
}

// command returns the command that runs argv in ns for this lab: it sees
// the node's files (see Node).
func (rt *Runtime) command(ns string, argv []string) *exec.Cmd {
	cmd := nsexec.Command(ns, argv)
	cmd.Env = append(cmd.Env, store.ProcessTagEnv+"="+rt.processTag())
	if node, err := rt.Node(ns); err == nil && node.Exists() {
		cmd.Env = append(cmd.Env, nsexec.NodeEnv+"="+string(node))
	}
	return cmd
}

// Node returns the directory where the lab keeps what namespace ns shows
// over the machine's files (see nsexec.Node).
func (rt *Runtime) Node(ns string) (nsexec.Node, error) {
	if rt.Dir == "" {
		return "", fmt.Errorf("this run keeps no lab directory for files")
	}
	if ns == kernel.Host {
		return "", fmt.Errorf("host() shows the machine's own files")
	}
	return nsexec.NodeOf(rt.Dir, ns), nil
}

// StopProcess stops one background process of the run.
func (rt *Runtime) StopProcess(pid int) error {
	for _, s := range rt.Journal.Steps() {
		if s.Op == journal.OpProc && s.Pid == pid {
			return proc.Stop(s.Pid, s.Start)
		}
	}
	return fmt.Errorf("process %d was not started by this lab", pid)
}
