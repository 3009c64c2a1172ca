package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/proc"
)

const sandboxEnv = "NSRUN_SANDBOX"

// IDEnv is inherited by every process started inside a sandbox, so
// that what a sandbox left running can be found (see nstest).
const IDEnv = "NSRUN_SANDBOX_ID"

// sandboxed is read once and the variable removed, so that the processes a
// sandboxed run starts (an nsrun among them) do not take themselves for the
// sandbox's inside.
var sandboxed = func() bool {
	v := os.Getenv(sandboxEnv) == "1"
	os.Unsetenv(sandboxEnv)
	return v
}()

// Inside reports whether this process is the inside of a sandbox.
func Inside() bool { return sandboxed }

// Run runs this program again, with the same arguments, in a fresh
// network namespace and a private mount namespace, and returns its exit code.
// SIGINT and SIGTERM are passed on to it, so that it can roll back.
//
// With holdDir set, the sandbox may be kept: if the inside calls Hold, this
// returns the code it passes there and the sandbox lives on (see Hold).
func Run(holdDir string) (int, error) {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), sandboxEnv+"=1", IDEnv+"="+fmt.Sprint(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	var hold *holdEnd
	if holdDir != "" {
		var err error
		if hold, err = newHoldEnd(holdDir, os.Getpid()); err != nil {
			return 0, fmt.Errorf("making the sandbox's socket: %w", err)
		}
		defer hold.close()
		cmd.ExtraFiles = hold.files()
		cmd.Env = append(cmd.Env, holdEnv+"=1")
		cmd.SysProcAttr.Pdeathsig = 0 // a kept sandbox outlives this process
	}
	if uid := os.Geteuid(); uid != 0 {
		// Without root, a user namespace in which this user is root grants
		// what the sandbox needs over its own namespaces, and nothing over
		// the machine's.
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting the sandbox: %w", err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	if hold != nil {
		if code, held := hold.wait(); held {
			cmd.Process.Release() // it lives on
			return code, nil
		}
	}
	err := cmd.Wait()
	// Whatever the inside started and left (it was killed before its
	// teardown, say) would keep the sandbox's namespaces alive: end it.
	killSandboxed(os.Getpid())
	return nsexec.ExitCode(err)
}

// Setup prepares the inside of a sandbox: mounts stop propagating to
// the machine, and /run/netns, /run/nsrun and /sys are private to it, so
// names cannot collide with the machine's and nothing outlives the sandbox.
func Setup(dirs ...string) error {
	if err := unix.Mount("", "/", "none", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	for _, d := range dirs {
		err := os.MkdirAll(d, 0o755)
		if errors.Is(err, os.ErrPermission) {
			// Unprivileged, on a machine that has never had the directory:
			// a tmpfs over its parent (private to the sandbox) holds it.
			parent := filepath.Dir(d)
			if err := unix.Mount("tmpfs", parent, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
				return fmt.Errorf("mounting a tmpfs on %s: %w", parent, err)
			}
			err = os.MkdirAll(d, 0o755)
		}
		if err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			return fmt.Errorf("mounting a tmpfs on %s: %w", d, err)
		}
	}
	return nsexec.RemountSys("")
}

// killSandboxed SIGKILLs every process that carries sandbox id's mark in
// its environment (see SandboxIDEnv), until none is left. A process in the
// middle of an exec has no environment to read for a moment: only a few
// rounds in a row that find none end the search.
func killSandboxed(id int) {
	mark := strconv.Itoa(id)
	for round, clean := 0, 0; round < 50 && clean < 3; round++ {
		found := false
		for _, pid := range proc.Pids() {
			if v, ok := proc.Env(pid, IDEnv); ok && v == mark {
				syscall.Kill(pid, syscall.SIGKILL)
				found = true
			}
		}
		if clean++; found {
			clean = 0
		}
		time.Sleep(10 * time.Millisecond)
	}
}
