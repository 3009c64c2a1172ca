package builtins

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/undo"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// DefaultExecTimeout bounds a foreground command.
const DefaultExecTimeout = 30 * time.Second

// exec_in(netns, cmd, check=True, timeout="30s", stdin="", once=False)
// runs a command in the namespace as `ip netns exec` would, waits for it
// and returns struct(rc, stdout, stderr). A list is executed directly; a
// string goes through /bin/sh -c. A non-zero exit fails the recipe unless
// check=False. With once, the command is part of building the lab: it is
// journaled (op "ran"), and an apply whose lab ran it, in that namespace
// with those arguments, does not run it again (it returns rc 0, planned):
// a command that configures (ip addr add) is not idempotent.
//
// Equivalent to: ip netns exec $netns $cmd
func execIn(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var argv argvList
	check := true
	timeout := duration(DefaultExecTimeout)
	var stdin string
	var once bool
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"netns", &ns, "cmd", &argv, "check?", &check, "timeout?", &timeout, "stdin?", &stdin, "once?", &once); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if once {
		sum := sha256.Sum256([]byte(strings.Join(argv, "\x00") + "\x00\x00" + stdin))
		what := strings.Join(argv, " ")
		if len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" {
			what = argv[2]
		}
		step := journal.Step{Op: opRan, NS: ns.name, Name: what, Sum: hex.EncodeToString(sum[:8])}
		adopted := rt.WouldAdopt(step) // the lab ran it
		if err := rt.Later(thread, step, func(kernel.Kernel, *journal.Step) error { return nil }); err != nil {
			return nil, err
		}
		if adopted {
			return execResult(engine.ExecResult{Planned: true}), nil
		}
	}
	res, err := rt.Exec(rt.Ctx, ns.name, argv, stdin, time.Duration(timeout))
	if err != nil {
		return nil, fmt.Errorf("%s: %s in netns %q: %w", b.Name(), quoteArgv(argv), ns.Name(), err)
	}
	if res.TimedOut && check {
		return nil, fmt.Errorf("%s: %s in netns %q timed out after %s", b.Name(), quoteArgv(argv), ns.Name(), time.Duration(timeout))
	}
	if res.RC != 0 && check {
		msg := strings.TrimSpace(res.Stderr)
		if msg != "" {
			msg = ": " + lastLines(msg, 5)
		}
		return nil, fmt.Errorf("%s: %s in netns %q exited with status %d%s", b.Name(), quoteArgv(argv), ns.Name(), res.RC, msg)
	}
	return execResult(res), nil
}

// opRan is the journal's record of a command exec_in(once=True) ran: a
// part of building the lab, with nothing to undo (what it made in the
// lab's namespaces goes with them).
const opRan = "ran"

func init() {
	undo.RegisterTagged(opRan, func(kernel.Kernel, journal.Step) error { return nil })
}

// execResult is exec_in's value.
func execResult(res engine.ExecResult) starlark.Value {
	return starlarkstruct.FromStringDict(starlark.String("exec_result"), starlark.StringDict{
		"rc":        starlark.MakeInt(res.RC),
		"stdout":    starlark.String(res.Stdout),
		"stderr":    starlark.String(res.Stderr),
		"timed_out": starlark.Bool(res.TimedOut),
		"planned":   starlark.Bool(res.Planned),
	})
}

func quoteArgv(argv []string) string {
	if len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" {
		return fmt.Sprintf("%q", argv[2])
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = fmt.Sprintf("%q", a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Proc is a background process started by spawn_in (or dhcp_server).
type Proc struct {
	sp   *engine.Spawned
	argv []string
	ns   *Netns
	// pid is, in a lab across machines, the process's pid on the machine
	// of its namespace, as that machine answered (sp.Pid is 0 elsewhere).
	pid int
}

// Pid is the process's pid, on the machine of its namespace.
func (p *Proc) Pid() int {
	if p.sp.Pid != 0 {
		return p.sp.Pid
	}
	return p.pid
}

func (p *Proc) String() string {
	return fmt.Sprintf("proc(%q, pid=%d, %s)", p.sp.Name, p.Pid(), quoteArgv(p.argv))
}
func (p *Proc) Type() string          { return "proc" }
func (p *Proc) Freeze()               {}
func (p *Proc) Truth() starlark.Bool  { return true }
func (p *Proc) Hash() (uint32, error) { return uint32(p.Pid()), nil }
func (p *Proc) AttrNames() []string   { return attrNames(procMethods, "name", "pid") }
func (p *Proc) Attr(name string) (starlark.Value, error) {
	switch name {
	case "pid":
		return starlark.MakeInt(p.Pid()), nil
	case "name":
		return starlark.String(p.sp.Name), nil
	}
	return builtinAttr(p, name, procMethods)
}

var procMethods = map[string]*starlark.Builtin{
	"log":  starlark.NewBuiltin("log", shared(procLog, procNetns)),
	"stop": starlark.NewBuiltin("stop", procStop),
}

// spawn_in(netns, cmd, name=None, ready=None, timeout="30s", env=None,
// cwd=None) starts a command in the background in the namespace and returns
// a proc (.pid, .name, .log(), .stop()). Its standard output and error go
// to a log in the lab's directory (`nsrun logs`). With ready, spawn_in
// returns once the process is ready:
//
//	"unix:PATH"  a socket at PATH (as the node shows it) accepts connections
//	"file:PATH"  PATH exists
//	"tcp:PORT"   something listens on TCP port PORT in the namespace
//	"udp:PORT"   something is bound to UDP port PORT in the namespace
//	"log:REGEX"  a line of its output matches REGEX
//	a callable   it returns a true value
//
// If the process exits with an error first, or timeout passes, the recipe
// fails at the spawn_in line with the exit status and the end of its log
// (a process that exits with status 0 may have put itself in the
// background: the check goes on). name (default: the program's base name)
// is what ls, inspect, check, messages and `nsrun logs` call it; env is a
// dict added to its environment; cwd is where it starts, as the node shows
// it. It is stopped (SIGTERM, then SIGKILL) at teardown and on rollback,
// with every process it started.
//
// Equivalent to: ip netns exec $netns $cmd >LOG 2>&1 &
func spawnIn(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var argv argvList
	var name procName
	var ready readiness
	timeout := duration(DefaultExecTimeout)
	var env envDict
	var cwd starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &ns, "cmd", &argv,
		"name?", &name, "ready?", &ready, "timeout?", &timeout, "env?", &env, "cwd?", &cwd); err != nil {
		return nil, err
	}
	o := engine.SpawnOptions{Name: string(name), Env: env}
	if o.Name == "" {
		o.Name = programName(argv)
	}
	if cwd != starlark.None {
		var p nodePath
		if err := p.Unpack(cwd); err != nil {
			return nil, fmt.Errorf("%s: for parameter cwd: %w", b.Name(), err)
		}
		o.Cwd = string(p)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if err := noProcessIn(rt, b, ns); err != nil {
		return nil, err
	}
	if ready.kind == "call" && len(rt.Machines()) > 0 {
		// Its machine alone would call it, and what it observes is
		// every machine's to see at once (see wait_until).
		return nil, fmt.Errorf(`%s: in a lab across machines, ready= is one of "unix:PATH", "file:PATH", "tcp:PORT", "udp:PORT" or "log:REGEX", not a function: call wait_until() after spawn_in`, b.Name())
	}
	what := fmt.Sprintf("%s (%s) in netns %q", quoteArgv(argv), o.Name, ns.Name())
	for _, s := range rt.Steps() {
		if s.Op == journal.OpProc && s.NS == ns.name && s.Name == o.Name && proc.Running(s.Pid, s.Start) {
			return nil, fmt.Errorf("%s: a process named %q already runs in netns %q (give it another name=)", b.Name(), o.Name, ns.Name())
		}
	}
	sp, err := rt.Spawn(thread, ns.name, argv, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", b.Name(), what, err)
	}
	p := &Proc{sp: sp, argv: argv, ns: ns}
	if ready.kind != "" && sp.Exited != nil { // a check, not planning (nor another machine's)
		if err = ready.wait(thread, rt, ns, sp, time.Duration(timeout)); err != nil {
			// The process is journaled: the rollback stops it.
			err = fmt.Errorf("%s: %s: %w", b.Name(), what, err)
		}
	}
	return carriedProc(rt, ns, p, err)
}

// carriedProc is a process started in namespace ns, or why it could not
// be (err), as its machine says on every part of a lab across machines
// (see carried): its pid there.
func carriedProc(rt *engine.Runtime, ns *Netns, p *Proc, err error) (starlark.Value, error) {
	pid := 0
	if p != nil {
		pid = p.sp.Pid
	}
	v, err := carried(rt, ns, starlark.MakeInt(pid), err)
	if err != nil {
		return nil, err
	}
	if n, ok := v.(starlark.Int); ok && p != nil {
		p.pid, _ = starlark.AsInt32(n)
	}
	return p, nil
}

// procNetns is the namespace of a proc's method (see shared).
func procNetns(recv starlark.Value, _ starlark.Tuple, _ []starlark.Tuple) *Netns {
	if p, ok := recv.(*Proc); ok {
		return p.ns
	}
	return nil
}

// programName is the base name of the program a command runs: the first
// word of a shell command line that is not exec or an assignment.
func programName(argv []string) string {
	if len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" {
		for _, w := range strings.Fields(argv[2]) {
			if w != "exec" && !strings.Contains(w, "=") {
				return filepath.Base(w)
			}
		}
	}
	return filepath.Base(argv[0])
}

// procName is a background process's name: a file name, as its log is
// named after it.
type procName string

func (n *procName) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want a name", v.Type())
	}
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") || len(s) > 64 {
		return fmt.Errorf("%q is not a process name (1 to 64 characters, no /)", s)
	}
	*n = procName(s)
	return nil
}

// envDict is an environment to add: a dict of strings.
type envDict []string

func (e *envDict) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		return fmt.Errorf("got %s, want a dict of strings", v.Type())
	}
	for _, kv := range d.Items() {
		k, kok := starlark.AsString(kv[0])
		val, vok := starlark.AsString(kv[1])
		if !kok || !vok || k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env: %s: %s is not a variable and its value", kv[0], kv[1])
		}
		*e = append(*e, k+"="+val)
	}
	return nil
}

// proc.log() returns what the process has written to its standard output
// and error so far.
func procLog(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	p := b.Receiver().(*Proc)
	if p.sp.Log == "" {
		return starlark.String(""), nil
	}
	data, err := os.ReadFile(p.sp.Log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return starlark.String(data), nil
}

// proc.stop() stops the process and the processes it started, and journals
// it: check no longer expects it to run.
func procStop(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	p := b.Receiver().(*Proc)
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if p.sp.Pid == 0 { // planning
		return starlark.None, nil
	}
	if err := rt.Stopped(thread, p.sp.Pid); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return starlark.None, nil
}
