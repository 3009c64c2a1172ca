package cluster

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// A Machine is one of a cluster's simulated machines.
type Machine struct {
	// Name is "coord" for the coordinator, "m1", "m2"... for the others.
	Name string
	// Addr is its address on the underlay: 10.250.0.1 for the coordinator,
	// 10.250.0.(1+i) for mi.
	Addr netip.Addr
	// Pid is that of its init process, the first of its PID namespace, whose
	// namespaces are the machine's (nsenter -t Pid).
	Pid int
}

// Command returns a command that runs name with args in m: in its network,
// mount, PID and UTS namespaces, in the working directory of the caller
// (the machines see the host's files, but for /run, /proc, /sys, /var/log
// and /usr/local/bin), with the standard PATH as its only environment.
//
// The command runs as the child of nsenter, the Cmd's process: a signal to
// that process does not reach it. It ends with the machine at the latest.
func (m *Machine) Command(name string, args ...string) *exec.Cmd {
	wd, err := os.Getwd()
	if err != nil {
		wd = "/"
	}
	cmd := exec.Command("nsenter", append([]string{
		"-t", strconv.Itoa(m.Pid), "-n", "-m", "-p", "-u", "--wd=" + wd, "--", name,
	}, args...)...)
	cmd.Env = []string{"PATH=" + stdPath}
	return cmd
}

// Link sets m's link to the underlay up, or down, from inside m. Down, it
// cuts m off: new SSH connections to it fail (in ConnectTimeout), and those
// it has stall, with no reset, until it is up again (or ssh's
// ServerAliveInterval, if set, gives up on them).
func (m *Machine) Link(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return run(m.Command("ip", "link", "set", bridge, state))
}

// initScript is a machine's init, the process 1 of its PID namespace. It
// reaps the machine's orphans (wait does), and ends the machine, and the
// kernel every process in it, once fd 3, the cluster's lifeline, reads end
// of file: when the cluster closes, or the test's process ends without
// closing it.
const initScript = `trap 'exit 0' TERM
{ read _; kill -TERM 1; } <&3 &
exec 3<&- </dev/null
sleep infinity &
wait`

// setupScript makes a fresh machine what Machine describes, from inside it;
// its arguments are the machine's name, its underlay address, the cluster's
// directory, whether the cluster has an nsrun ("" if not) and the path of
// the one this machine gets ("" for none). With an nsrun, /usr/local/bin is
// a tmpfs of the machine's own, with links to what the host's holds (bound
// in the cluster's directory) but its nsrun, and the one given bound onto
// /usr/local/bin/nsrun: the host's files stay as they are. Every mount is
// made with -n: the host's /run/mount is no business of a machine.
const setupScript = `set -e
name=$1 addr=$2 dir=$3 nsrun=$4 bin=$5
mount -n --make-rprivate /
mount -n -t tmpfs -o mode=0755 tmpfs /run
mkdir -m 0755 /run/netns /run/nsrun /run/sshd
mount -n -t proc proc /proc
mount -n -t sysfs sysfs /sys
mount -n -t tmpfs -o mode=0755 tmpfs /var/log
echo "$name" >/proc/sys/kernel/hostname
ip link set lo up
ip addr add "$addr/24" dev ul0
ip link set ul0 up
if [ -n "$nsrun" ]; then
	host=$dir/$name-local-bin
	mount -n --bind /usr/local/bin "$host"
	mount -n -t tmpfs -o mode=0755 tmpfs /usr/local/bin
	for f in "$host"/* "$host"/.[!.]*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		[ "${f##*/}" != nsrun ] || continue
		ln -s "$f" /usr/local/bin/
	done
	if [ -n "$bin" ]; then
		: >/usr/local/bin/nsrun
		mount -n --bind "$bin" /usr/local/bin/nsrun
	fi
fi
test -d "$dir"
`

// machine starts the machine name, with address addr, that lives while
// lifeline is open: its init, its link to the underlay, and the rest of it
// from inside. With hasNsrun, it gets /usr/local/bin/nsrun from bin ("":
// it gets none).
func (c *Cluster) machine(name string, addr netip.Addr, lifeline *os.File, hasNsrun bool, bin string) (*Machine, error) {
	cmd := exec.Command("sh", "-c", initScript)
	cmd.ExtraFiles = []*os.File{lifeline}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS,
	}
	if _, err := c.spawn(cmd, true); err != nil {
		return nil, fmt.Errorf("starting its init: %w", err)
	}
	m := &Machine{Name: name, Addr: addr, Pid: cmd.Process.Pid}
	port := "ul-" + name
	if err := c.underlayIP("link", "add", port, "type", "veth", "peer", "name", bridge, "netns", strconv.Itoa(m.Pid)); err != nil {
		return nil, err
	}
	if err := c.underlayIP("link", "set", port, "master", bridge, "up"); err != nil {
		return nil, err
	}
	nsrun := ""
	if hasNsrun {
		nsrun = "yes"
		if err := os.Mkdir(filepath.Join(c.Dir, name+"-local-bin"), 0o755); err != nil {
			return nil, err
		}
	}
	if err := run(m.Command("sh", "-c", setupScript, "sh", name, addr.String(), c.Dir, nsrun, bin)); err != nil {
		return nil, fmt.Errorf("setting it up: %w", err)
	}
	return m, nil
}

// sshd starts m's sshd, with its configuration and host key in c.Dir and
// its log in c.Dir/NAME-sshd.log.
func (c *Cluster) sshd(m *Machine) (*process, error) {
	conf, err := c.sshdConfig(m)
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(c.Dir, m.Name+"-sshd.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := m.Command("/usr/sbin/sshd", "-D", "-e", "-f", conf)
	cmd.Stdout, cmd.Stderr = log, log
	return c.spawn(cmd, false)
}
