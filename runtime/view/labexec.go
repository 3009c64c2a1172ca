package view

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/store"
	"golang.org/x/sys/unix"
)

// LabNetns resolves a namespace argument of `nsrun exec` and `nsrun shell`:
// "host" or a namespace the lab created (and that still exists).
func LabNetns(l *store.Lab, k kernel.Kernel, arg string) (string, error) {
	if arg == "host" {
		return kernel.Host, nil
	}
	st, _, err := l.State()
	if err != nil {
		return "", err
	}
	if !st.HasNetns(arg) {
		return "", fmt.Errorf("lab %q has no netns %q (it has: host%s)", l.Info.Name, arg, listNetns(st.NetnsNames()))
	}
	if ok, err := k.NetnsExists(arg); err != nil || !ok {
		return "", fmt.Errorf("netns %q of lab %q is gone (see `nsrun check %s`)", arg, l.Info.Name, l.Info.Name)
	}
	return arg, nil
}

func listNetns(names []string) string {
	s := ""
	for _, n := range names {
		s += ", " + n
	}
	return s
}

// Stdio is where a command run by RunIn reads and writes.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// RunIn runs argv in namespace ns of the lab as exec_in does — as
// `ip netns exec $ns argv...` would, in a process group of its own, tagged
// with the lab's NSRUN_LAB so that `nsrun down` ends it — with env added to
// its environment, and returns its exit code (128+n if signal n ended it).
// On a terminal the command's group is put in the foreground, so that
// Ctrl-C, Ctrl-Z and job control reach it and not nsrun; otherwise SIGINT,
// SIGTERM, SIGHUP and SIGQUIT that nsrun gets are passed on to its group.
//
// Equivalent to: NSRUN_LAB=LAB/ID ip netns exec $ns argv...
func RunIn(l *store.Lab, k kernel.Pather, ns string, argv, env []string, stdio Stdio) (int, error) {
	cmd := nsexec.Command(ns, argv)
	cmd.Env = append(append(cmd.Env, env...), store.ProcessTagEnv+"="+l.ProcessTag())
	if node := nsexec.NodeOf(l.Dir, ns); ns != kernel.Host && node.Exists() {
		cmd.Env = append(cmd.Env, nsexec.NodeEnv+"="+string(node)) // it sees the node's files
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.In, stdio.Out, stdio.Err
	tty := foregroundTTY(stdio.In)
	if tty != nil {
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = int(tty.Fd())
		defer takeTerminal(tty)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := nsexec.Start(k.Path(ns), cmd); err != nil {
		return 0, fmt.Errorf("starting %q in netns %q of lab %q: %w", argv[0], kernel.NSArg(ns), l.Info.Name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			syscall.Kill(-cmd.Process.Pid, sig.(syscall.Signal))
		case err := <-done:
			return nsexec.ExitCode(err)
		}
	}
}

// foregroundTTY returns in if it is the terminal whose foreground process
// group nsrun is in: only then may the command take the foreground.
func foregroundTTY(in io.Reader) *os.File {
	f, ok := in.(*os.File)
	if !ok {
		return nil
	}
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	if err != nil || pgrp != unix.Getpgrp() {
		return nil
	}
	return f
}

// takeTerminal puts nsrun's process group back in the terminal's
// foreground after the command ended. nsrun is then in the background, where
// tcsetpgrp raises SIGTTOU: it is ignored for the call.
func takeTerminal(tty *os.File) {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	unix.IoctlSetPointerInt(int(tty.Fd()), unix.TIOCSPGRP, unix.Getpgrp())
}

// ShellCommand returns the argv and environment of an interactive shell for
// `nsrun shell`: $SHELL, else /bin/bash, else /bin/sh, started with -i (an
// interactive shell even when its input is not a terminal), with
// PS1="[nsrun LAB/NS] \w\$ " and NSRUN_NETNS=LAB/NS in its environment. bash
// also gets --norc --noprofile: rc files commonly set PS1 and would hide
// which namespace the shell is in. Other shells (sh, dash) take PS1 from the
// environment but do not expand \w: they get "[nsrun LAB/NS] $ " ("# " for
// root); a user's rc can build its own prompt from NSRUN_NETNS.
func ShellCommand(lab, ns string) (argv, env []string) {
	shell := os.Getenv("SHELL")
	if shell == "" {
		shell = "/bin/sh"
		if _, err := os.Stat("/bin/bash"); err == nil {
			shell = "/bin/bash"
		}
	}
	where := lab + "/" + ns
	env = []string{"NSRUN_NETNS=" + where}
	if filepath.Base(shell) == "bash" {
		return []string{shell, "--norc", "--noprofile", "-i"}, append(env, `PS1=[nsrun `+where+`] \w\$ `)
	}
	mark := "$"
	if os.Geteuid() == 0 {
		mark = "#"
	}
	return []string{shell, "-i"}, append(env, "PS1=[nsrun "+where+"] "+mark+" ")
}
