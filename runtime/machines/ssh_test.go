package machines

import (
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/journal"
)

// The remote command is nsrun's words and the arguments, each quoted for
// the remote shell; host keys are always checked.
func TestSSHCommand(t *testing.T) {
	m := journal.Machine{Name: "m2", SSH: "ops@m2", Config: "/etc/lab/ssh_config", Nsrun: "sudo -n /usr/local/bin/nsrun"}
	cmd := sshCommand(m, 5*time.Second, "exec", "lab", "a 1", "it's")
	got := strings.Join(cmd.Args, " ")
	want := "ssh -F /etc/lab/ssh_config -T -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o ServerAliveInterval=1 -o ServerAliveCountMax=3 -- ops@m2 sudo -n /usr/local/bin/nsrun exec lab 'a 1' 'it'\\''s'"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := sshCommand(journal.Machine{SSH: "m3"}, time.Second, "part").Args; got[len(got)-2] != "nsrun" {
		t.Errorf("no nsrun= runs nsrun: %q", got)
	}
}
