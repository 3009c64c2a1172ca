package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const otherUID = 65533 // a user other than the test's

// mustUntrusted fails t unless err is an UntrustedError naming path and
// saying want.
func mustUntrusted(t *testing.T, what string, err error, path, want string) {
	t.Helper()
	var u *UntrustedError
	if !errors.As(err, &u) || u.Path != path || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: got %v, want an UntrustedError of %s saying %q", what, err, path, want)
	}
}

// A kept sandbox's directory is used, by the server and by its clients,
// only if it is this user's own, private, where no one else can replace it.
func TestCheckHoldDir(t *testing.T) {
	uid := os.Geteuid()
	bad := []struct {
		name string
		make func(t *testing.T, dir string)
		want string
		root bool // needs root, to give the directory to another user
	}{
		{"group may enter", func(t *testing.T, dir string) { mkdir(t, dir, 0o750) }, "its mode drwxr-x--- lets others in", false},
		{"world-writable", func(t *testing.T, dir string) { mkdir(t, dir, 0o777) }, "its mode drwxrwxrwx lets others in", false},
		{"sticky, world-writable", func(t *testing.T, dir string) { mkdir(t, dir, 0o777|fs.ModeSticky) }, "lets others in", false},
		{"symlink", func(t *testing.T, dir string) {
			mkdir(t, dir+".real", 0o700)
			if err := os.Symlink(dir+".real", dir); err != nil {
				t.Fatal(err)
			}
		}, "it is a symlink", false},
		{"file", func(t *testing.T, dir string) {
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "it is not a directory", false},
		{"another user's", func(t *testing.T, dir string) {
			mkdir(t, dir, 0o700)
			chown(t, dir, otherUID)
		}, "it is owned by uid 65533 (mode drwx------), not by you (uid 0)", true},
		{"another user's, open to all", func(t *testing.T, dir string) {
			mkdir(t, dir, 0o777)
			chown(t, dir, otherUID)
		}, "it is owned by uid 65533", true},
		{"in a directory others may write to, not sticky", func(t *testing.T, dir string) {
			os.Chmod(filepath.Dir(dir), 0o777)
			mkdir(t, dir, 0o700)
		}, "is writable by others (mode drwxrwxrwx) and not sticky", false},
		{"in another user's directory", func(t *testing.T, dir string) {
			chown(t, filepath.Dir(dir), otherUID)
			mkdir(t, dir, 0o700)
		}, "on its path, is owned by uid 65533", true},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			if c.root && uid != 0 {
				t.Skip("needs root to give a directory to another user")
			}
			dir := filepath.Join(t.TempDir(), "parent", "nsrun-sandbox")
			mkdir(t, filepath.Dir(dir), 0o755)
			c.make(t, dir)
			before, _ := os.Lstat(dir)
			mustUntrusted(t, "the server's check", checkHoldDir(dir, true), dir, c.want)
			sandboxes, err := ListKept(dir)
			mustUntrusted(t, "KeptSandboxes", err, dir, c.want)
			if len(sandboxes) > 0 {
				t.Errorf("KeptSandboxes lists %v", sandboxes)
			}
			_, err = Kept{filepath.Join(dir, "1.sock")}.Labs()
			mustUntrusted(t, "a client's dial", err, dir, c.want)
			if after, _ := os.Lstat(dir); after.Mode() != before.Mode() || owner(after) != owner(before) {
				t.Errorf("the check changed it: %v, was %v", after.Mode(), before.Mode())
			}
			if !strings.Contains(err.Error(), "XDG_RUNTIME_DIR") && uid != 0 {
				t.Errorf("the error does not say what to do: %v", err)
			}
		})
	}

	t.Run("fine", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nsrun-sandbox")
		if _, err := ListKept(dir); err != nil {
			t.Errorf("KeptSandboxes of a missing directory: %v", err)
		}
		if err := checkHoldDir(dir, false); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a client's check of a missing directory: %v", err)
		}
		if _, err := os.Lstat(dir); err == nil {
			t.Errorf("a client made the directory")
		}
		old := syscall.Umask(0o777) // the directory is 0700 whatever the umask
		err := checkHoldDir(dir, true)
		syscall.Umask(old)
		if err != nil {
			t.Fatalf("the server's check of a missing directory: %v", err)
		}
		if fi, err := os.Lstat(dir); err != nil || fi.Mode() != fs.ModeDir|0o700 || owner(fi) != uid {
			t.Fatalf("made %v, %v", fi, err)
		}
		if err := checkHoldDir(dir, true); err != nil {
			t.Errorf("checked again: %v", err)
		}
		if sandboxes, err := ListKept(dir); err != nil || len(sandboxes) != 0 {
			t.Errorf("KeptSandboxes: %v, %v", sandboxes, err)
		}
		sticky := filepath.Join(t.TempDir(), "tmp", "nsrun-sandbox-1")
		mkdir(t, filepath.Dir(sticky), 0o777|fs.ModeSticky) // as /tmp is
		if err := checkHoldDir(sticky, true); err != nil {
			t.Errorf("in a sticky directory all may write to: %v", err)
		}
	})
}

// HoldDir takes $XDG_RUNTIME_DIR only if it is the user's and no one else
// may write to it.
func TestHoldDirRuntimeDir(t *testing.T) {
	if os.Geteuid() == 0 {
		if got := HoldDir("/run/nsrun"); got != "/run/nsrun/.sandbox" {
			t.Errorf("root's: %s", got)
		}
		return // root's is in the state directory, and root owns all
	}
	good := t.TempDir()
	os.Chmod(good, 0o700)
	t.Setenv("XDG_RUNTIME_DIR", good)
	if got := HoldDir("/run/nsrun"); got != filepath.Join(good, "nsrun-sandbox") {
		t.Errorf("a private XDG_RUNTIME_DIR: %s", got)
	}
	os.Chmod(good, 0o777)
	if got := HoldDir("/run/nsrun"); strings.HasPrefix(got, good) {
		t.Errorf("an XDG_RUNTIME_DIR all may write to: %s", got)
	}
	os.Chmod(good, 0o700)
}

// A client sends nothing to a socket that another user listens on, even in
// a directory that passes the check; it talks to one of its own user.
func TestKeptSandboxPeerChecked(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to listen as another user")
	}
	dir := filepath.Join(t.TempDir(), "nsrun-sandbox")
	if err := checkHoldDir(dir, true); err != nil {
		t.Fatal(err)
	}

	// Another user's listener: bound here by root, but listening (which
	// is what the peer's credentials are taken from) as otherUID.
	path := filepath.Join(dir, "1"+holdSock)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), otherUID, ^uintptr(0)); e != 0 {
			errc <- e
			return
		}
		errc <- unix.Listen(fd, 4)
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "other"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string // what reached the other user
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf, oob := make([]byte, 1<<16), make([]byte, 1024)
			n, oobn, _, _, _ := c.(*net.UnixConn).ReadMsgUnix(buf, oob)
			if n > 0 || oobn > 0 {
				got = append(got, fmt.Sprintf("%q and %d bytes of control", buf[:n], oobn))
			}
			c.Close() // a client that sent something waits for an answer
		}
	}()
	s := Kept{path}
	_, err = s.Labs()
	mustUntrusted(t, "Labs", err, path, "is uid 65533, not you (uid 0)")
	_, err = s.Run([]string{"ls"}, os.Stdin, os.Stdout, os.Stderr)
	mustUntrusted(t, "Run", err, path, "is uid 65533, not you (uid 0)")
	ln.Close()
	<-done
	if len(got) > 0 {
		t.Errorf("the other user's listener got: %s", strings.Join(got, "; "))
	}

	// This user's listener: its holder answers.
	path = filepath.Join(dir, "2"+holdSock)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.AcceptUnix()
		if err == nil {
			serve(c, func() []string { return []string{"lab1"} })
		}
	}()
	if labs, err := (Kept{path}).Labs(); err != nil || len(labs) != 1 || labs[0] != "lab1" {
		t.Errorf("Labs of this user's sandbox: %v, %v", labs, err)
	}
}

func mkdir(t *testing.T, dir string, mode fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}
