package nsexec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The binary re-executes itself as a small helper to do what `ip netns exec`
// does beyond entering the network namespace: that part needs a process of its
// own (a private mount namespace cannot be entered by one thread of a Go
// program). The helper is selected by an environment variable, so that it
// works the same from the nsrun binary and from a test binary.
const helperEnv = "NSRUN_NSEXEC_HELPER"

// MaybeHelper runs the helper and never returns if this process was started
// as one. Call it first thing in main and in TestMain.
func MaybeHelper() {
	name, ok := os.LookupEnv(helperEnv)
	if !ok {
		return
	}
	os.Unsetenv(helperEnv)
	restoreNofile()
	if err := helper(name, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "nsrun: exec in netns %q: %v\n", name, err)
		os.Exit(execFailed(err))
	}
}

// execFailed is the exit code of a command that could not be run, as a
// shell has it: 127 not found, 126 found but not runnable (a directory, no
// permission).
func execFailed(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return 127
	}
	return 126
}

// Command returns a command that runs argv as `ip netns exec NAME argv...`
// would: in the network namespace the returned command is started from (see
// Start), in a private mount namespace with /sys showing that network
// namespace, and with the files of /etc/netns/NAME bound over /etc. An empty
// name means the process's own namespace: then only the mount namespace is
// private.
func Command(name string, argv []string) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", argv...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS,
		Setpgid:    true, // one group per command: teardown signals it whole
	}
	return cmd
}

// Start starts cmd inside the network namespace at path ("" for the process's
// own); the child inherits the namespace of the thread that forks it.
func Start(path string, cmd *exec.Cmd) error {
	return Do(path, cmd.Start)
}

// ExitCode returns the exit code of a command that ended with err (from
// Wait or Run): its own, or 128+N if signal N ended it, as a shell has it;
// err itself if the command did not run or could not be waited for.
func ExitCode(err error) (int, error) {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	return 0, err
}

// InternalPrefix marks, in a command's argv[0], a function of nsrun's own to
// run in the helper process instead of a program to execute: daemons such as
// the DHCP server run as processes of their own, so they outlive the run that
// started them when its lab stays up, and `nsrun down` stops them.
const InternalPrefix = "nsrun-internal:"

var internals = map[string]func(args []string) int{}

// RegisterInternal makes fn runnable as the argv[0] InternalPrefix+name in
// Command. Call it from an init function.
func RegisterInternal(name string, fn func(args []string) int) {
	internals[name] = fn
}

func helper(name string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("no command")
	}
	// Our mounts must not propagate back to the parent mount namespace.
	if err := unix.Mount("", "/", "none", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making / a slave mount: %w", err)
	}
	if err := RemountSys(os.Getenv(LabEnv)); err != nil {
		return err
	}
	if name != "" {
		if err := bindEtc(name); err != nil {
			return err
		}
	}
	if node, ok := os.LookupEnv(NodeEnv); ok {
		os.Unsetenv(NodeEnv)
		if err := Node(node).show(); err != nil {
			return fmt.Errorf("showing the node's files: %w", err)
		}
	}
	if dir, ok := os.LookupEnv(CwdEnv); ok {
		os.Unsetenv(CwdEnv)
		if err := os.Chdir(dir); err != nil {
			return err
		}
	}
	if name, ok := strings.CutPrefix(argv[0], InternalPrefix); ok {
		fn, ok := internals[name]
		if !ok {
			return fmt.Errorf("no internal command %q", name)
		}
		os.Exit(fn(argv[1:]))
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	err = unix.Exec(path, argv, os.Environ())
	if errors.Is(err, unix.ENOEXEC) {
		// A script without #!: the shell runs it, as execvp(3) does.
		err = unix.Exec("/bin/sh", append([]string{"sh", path}, argv[1:]...), os.Environ())
	}
	return err
}

// LabEnv names the environment variable that carries the tag of the lab a
// command is run for (see store.ProcessTagEnv).
const LabEnv = "NSRUN_LAB"

// SysSource is the source of the /sys that the helper mounts for a command
// of the lab with tag: every process the command starts is in the
// command's mount namespace, or in one copied from it, and shows that
// mount in /proc/PID/mountinfo, whatever it does to its environment, user,
// session or group — a mark only the privilege to unmount /sys sheds.
func SysSource(tag string) string { return "nsrun-lab:" + tag }

// RemountSys mounts a sysfs that shows the current network namespace's
// devices over /sys, as ip netns exec does; the mount's source is the
// lab's mark (see SysSource) for a command of a lab's.
func RemountSys(tag string) error {
	source := "sysfs"
	if tag != "" {
		source = SysSource(tag)
	}
	var flags uintptr
	var st unix.Statfs_t
	if unix.Statfs("/sys", &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
		flags = unix.MS_RDONLY
	}
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return fmt.Errorf("unmounting /sys: %w", err)
	}
	if err := unix.Mount(source, "/sys", "sysfs", flags, ""); err != nil {
		return fmt.Errorf("mounting sysfs: %w", err)
	}
	return nil
}

// bindEtc binds every file of /etc/netns/NAME over the same name in /etc.
func bindEtc(name string) error {
	dir := filepath.Join("/etc/netns", name)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		src := filepath.Join(dir, e.Name())
		dst := filepath.Join("/etc", e.Name())
		if err := unix.Mount(src, dst, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s over %s: %w", src, dst, err)
		}
	}
	return nil
}
