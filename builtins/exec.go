package builtins

import (
	"fmt"
	"strings"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// DefaultExecTimeout bounds a foreground command.
const DefaultExecTimeout = 30 * time.Second

// exec_in(netns, cmd, check=True, timeout="30s", stdin="") runs a command in
// the namespace as `ip netns exec` would, waits for it and returns
// struct(rc, stdout, stderr). A list is executed directly; a string goes
// through /bin/sh -c. A non-zero exit fails the recipe unless check=False.
//
// Equivalent to: ip netns exec $netns $cmd
func execIn(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var argv argvList
	check := true
	timeout := duration(DefaultExecTimeout)
	var stdin string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"netns", &ns, "cmd", &argv, "check?", &check, "timeout?", &timeout, "stdin?", &stdin); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
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
	return starlarkstruct.FromStringDict(starlark.String("exec_result"), starlark.StringDict{
		"rc":        starlark.MakeInt(res.RC),
		"stdout":    starlark.String(res.Stdout),
		"stderr":    starlark.String(res.Stderr),
		"timed_out": starlark.Bool(res.TimedOut),
	}), nil
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

// Proc is a background process started by spawn_in.
type Proc struct {
	pid  int
	argv []string
}

func (p *Proc) String() string        { return fmt.Sprintf("proc(pid=%d, %s)", p.pid, quoteArgv(p.argv)) }
func (p *Proc) Type() string          { return "proc" }
func (p *Proc) Freeze()               {}
func (p *Proc) Truth() starlark.Bool  { return true }
func (p *Proc) Hash() (uint32, error) { return uint32(p.pid), nil }
func (p *Proc) AttrNames() []string   { return attrNames(procMethods, "pid") }
func (p *Proc) Attr(name string) (starlark.Value, error) {
	if name == "pid" {
		return starlark.MakeInt(p.pid), nil
	}
	return builtinAttr(p, name, procMethods)
}

var procMethods = map[string]*starlark.Builtin{
	"stop": starlark.NewBuiltin("stop", procStop),
}

// spawn_in(netns, cmd) starts a command in the background in the namespace
// and returns a proc with .pid and .stop(). It is stopped (SIGTERM, then
// SIGKILL) at teardown and on rollback, with every process it started.
//
// Equivalent to: ip netns exec $netns $cmd &
func spawnIn(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var argv argvList
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &ns, "cmd", &argv); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	pid, err := rt.Spawn(thread, ns.name, argv)
	if err != nil {
		return nil, fmt.Errorf("%s: %s in netns %q: %w", b.Name(), quoteArgv(argv), ns.Name(), err)
	}
	return &Proc{pid: pid, argv: argv}, nil
}

// proc.stop() stops the process and the processes it started.
func procStop(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	p := b.Receiver().(*Proc)
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if err := rt.StopProcess(p.pid); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return starlark.None, nil
}
