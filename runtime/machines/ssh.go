package machines

import (
	"os/exec"
	"strconv"
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
	argv = append(argv, nsrun)
	argv = append(argv, args...)
	return exec.Command("ssh", argv...)
}
