package machines

import (
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/nsrun/nsrun/runtime/journal"
)

// sshCommand returns OpenSSH's ssh running nsrun's args on machine m,
// with the user's keys, agent and configuration (m.Config as ssh -F),
// host keys always checked, no prompt, and a connection that fails within
// seconds once the machine stops answering.
func sshCommand(m journal.Machine, timeout time.Duration, args ...string) *exec.Cmd {
	argv := []string{}
	if m.Config != "" {
		argv = append(argv, "-F", m.Config)
	}
	secs := strconv.Itoa(max(1, int(timeout/time.Second)))
	argv = append(argv,
		"-T",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout="+secs,
		"-o", "ServerAliveInterval=1",
		"-o", "ServerAliveCountMax=3",
		"--", m.SSH)
	nsrun := m.Nsrun
	if nsrun == "" {
		nsrun = "nsrun"
	}
	// ssh hands the remote shell one string: each word is quoted for it.
	// nsrun may be words ("sudo -n nsrun", for a user allowed to run it
	// as root).
	for _, w := range strings.Fields(nsrun) {
		argv = append(argv, shellQuote(w))
	}
	for _, a := range args {
		argv = append(argv, shellQuote(a))
	}
	return exec.Command("ssh", argv...)
}

// Where returns the machine that holds namespace ns of a lab across
// machines, by the lab's steps, or nil if it is this machine's.
func Where(steps []journal.Step, ns string) *journal.Machine {
	on := ""
	for _, s := range steps {
		if s.Op == journal.OpNetns && s.Name == ns && s.Away {
			on = s.On
		}
	}
	if on == "" {
		return nil
	}
	for _, s := range steps {
		if s.Op == journal.OpPart && s.Name == on && s.Machine != nil {
			return s.Machine
		}
	}
	return nil
}

// Remote returns ssh running nsrun's args on machine m, for a person at
// a terminal (tty: ssh -t).
func Remote(m journal.Machine, tty bool, args ...string) *exec.Cmd {
	cmd := sshCommand(m, connectTimeout, args...)
	if tty {
		for i, a := range cmd.Args {
			if a == "-T" {
				cmd.Args[i] = "-t"
			}
		}
	}
	return cmd
}

// shellQuote quotes s for a POSIX shell, unless it needs none.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
