package nsexec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const sandboxEnv = "NSRUN_SANDBOX"

// SandboxIDEnv is inherited by every process started inside a sandbox, so
// that what a sandbox left running can be found (see nstest).
const SandboxIDEnv = "NSRUN_SANDBOX_ID"

// sandboxed is read once and the variable removed, so that the processes a
// sandboxed run starts (an nsrun among them) do not take themselves for the
// sandbox's inside.
var sandboxed = func() bool {
	v := os.Getenv(sandboxEnv) == "1"
	os.Unsetenv(sandboxEnv)
	return v
}()

// Sandboxed reports whether this process is the inside of a sandbox.
func Sandboxed() bool { return sandboxed }

// RunSandboxed runs this program again, with the same arguments, in a fresh
// network namespace and a private mount namespace, and returns its exit code.
// SIGINT and SIGTERM are passed on to it, so that it can roll back.
func RunSandboxed() (int, error) {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), sandboxEnv+"=1", SandboxIDEnv+"="+fmt.Sprint(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
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
	err := cmd.Wait()
	// Whatever the inside started and left (it was killed before its
	// teardown, say) would keep the sandbox's namespaces alive: end it.
	killSandboxed(os.Getpid())
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	return 0, err
}

// SetupSandbox prepares the inside of a sandbox: mounts stop propagating to
// the machine, and /run/netns, /run/nsrun and /sys are private to it, so
// names cannot collide with the machine's and nothing outlives the sandbox.
func SetupSandbox(dirs ...string) error {
	if err := unix.Mount("", "/", "none", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			return fmt.Errorf("mounting a tmpfs on %s: %w", d, err)
		}
	}
	return remountSys()
}

// killSandboxed SIGKILLs every process that carries sandbox id's mark in
// its environment (see SandboxIDEnv), until none is left.
func killSandboxed(id int) {
	mark := []byte(SandboxIDEnv + "=" + strconv.Itoa(id) + "\x00")
	for round := 0; round < 50; round++ {
		found := false
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
			if err == nil && bytes.Contains(env, mark) {
				syscall.Kill(pid, syscall.SIGKILL)
				found = true
			}
		}
		if !found {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
