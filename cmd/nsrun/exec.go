package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/machines"
	"github.com/nsrun/nsrun/runtime/view"
)

func init() {
	register(
		command{"exec", "LAB NS -- CMD [ARGS...]", "run a command in a namespace of a lab (NS: a namespace the lab created, or host)", cmdExec},
		command{"shell", "LAB NS", "start an interactive shell in a namespace of a lab, with the namespace in its prompt", cmdShell},
	)
}

// Equivalent to: NSRUN_LAB=LAB/ID ip netns exec NS CMD [ARGS...]
func cmdExec(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("exec", "[--sandbox-id ID] LAB NS -- CMD [ARGS...]", stderr)
	fs.SetInterspersed(false) // what follows NS is the command's
	sandboxIDFlag(fs)
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(fs.Output(), execCodes)
	}
	if code, done := parse(fs, args, stdout); done {
		return ownCode(code)
	}
	rest := fs.Args()
	if len(rest) > 2 && rest[2] == "--" {
		rest = append(rest[:2:2], rest[3:]...)
	}
	if len(rest) < 3 {
		fmt.Fprintln(stderr, "nsrun exec: name a lab, a namespace and a command: nsrun exec LAB NS -- CMD [ARGS...]")
		return ExitOwn
	}
	if code, ok := inKeptSandboxOr(ExitOwn, ExitOwn, labArg(fs, rest[0]), append([]string{"exec"}, args...), stdout, stderr); ok {
		return code
	}
	return runIn(rest[0], rest[1], rest[2:], nil, stdout, stderr)
}

// Equivalent to: NSRUN_LAB=LAB/ID ip netns exec NS env PS1='[nsrun LAB/NS] \w\$ ' bash --norc --noprofile -i
func cmdShell(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("shell", "[--sandbox-id ID] LAB NS", stderr)
	sandboxIDFlag(fs)
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(fs.Output(), execCodes)
	}
	if code, done := parse(fs, args, stdout); done {
		return ownCode(code)
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(stderr, "nsrun shell: name a lab and one of its namespaces (or host): nsrun shell LAB NS")
		return ExitOwn
	}
	if code, ok := inKeptSandboxOr(ExitOwn, ExitOwn, labArg(fs, fs.Arg(0)), append([]string{"shell"}, args...), stdout, stderr); ok {
		return code
	}
	argv, env := view.ShellCommand(fs.Arg(0), fs.Arg(1))
	return runIn(fs.Arg(0), fs.Arg(1), argv, env, stdout, stderr)
}

const execCodes = `
Exit codes: the command's own; 125 nsrun failed itself (bad usage, no such
lab or namespace); 126 the command could not be run; 127 it was not found.
`

// ExitOwn is the exit code of exec and shell when they fail themselves
// (bad usage, no such lab or namespace), as env(1)'s and docker run's:
// every other code is the command's own, 126 if it could not be run and 127
// if it was not found.
const ExitOwn = 125

// ownCode maps a parse's exit code to exec's: help is 0, bad usage ExitOwn.
func ownCode(code int) int {
	if code == engine.ExitOK {
		return code
	}
	return ExitOwn
}

// runIn runs argv in namespace ns of lab name with the process's stdin and
// returns the command's exit code.
func runIn(name, ns string, argv, env []string, stdout, stderr io.Writer) int {
	lab, k, err := openLab(name, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return ExitOwn
	}
	defer k.Close()
	if steps, err := lab.Steps(); err == nil {
		if m := machines.Where(steps, ns); m != nil { // a lab across machines: the namespace is m's
			return remoteIn(*m, name, ns, argv, env, stdout, stderr)
		}
	}
	netns, err := view.LabNetns(lab, k, ns)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return ExitOwn
	}
	// A command that cannot run is the helper's exit (126, 127); an error
	// here is nsrun's own, starting it.
	code, err := view.RunIn(lab, k, netns, argv, env, view.Stdio{In: os.Stdin, Out: stdout, Err: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return ExitOwn
	}
	return code
}

// remoteIn runs argv in namespace ns of lab on machine m, with m's own
// nsrun (exec there, or shell when env is a shell's), over ssh.
//
// With raw, it runs those words of nsrun's there instead.
func remoteIn(m journal.Machine, lab, ns string, argv, env []string, stdout, stderr io.Writer, raw ...string) int {
	args := append([]string{"exec", lab, ns, "--"}, argv...)
	switch {
	case len(raw) > 0:
		args = raw
	case env != nil:
		args = []string{"shell", lab, ns}
	}
	cmd := machines.Remote(m, env != nil, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		fmt.Fprintf(stderr, "nsrun: machine %q: %v\n", m.Name, err)
		return ExitOwn
	}
	return 0
}
