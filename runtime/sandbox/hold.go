package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/proc"
	"golang.org/x/sys/unix"
)

// A kept sandbox outlives the command that made it: its inside, once the
// command's work is done, becomes a holder that keeps the sandbox's
// namespaces alive and runs nsrun commands in them for others (`nsrun exec`,
// `shell`, `inspect`, `down` of a lab in it). A Go program cannot enter
// another process's mount and user namespaces (the kernel refuses them to a
// multithreaded process), so instead of entering, a command asks the holder
// over a unix socket to run it, passing its standard input, output and error
// along. The holder ends, and the sandbox with it, when no lab is left in it.
//
// The sockets are the registry of kept sandboxes: one per sandbox, in
// HoldDir, named by the id of the sandbox.

const (
	// holdEnv tells the inside it may hold: the listening socket is its fd 3,
	// the ready pipe fd 4, and HoldDir's parent fd 5 (inside, the path may
	// be under a mount of the sandbox's own).
	holdEnv  = "NSRUN_SANDBOX_HOLD"
	holdSock = ".sock"
)

// HoldDir is where this user's kept sandboxes have their sockets: in
// nsrun's state directory for root; else in the user's runtime directory,
// $XDG_RUNTIME_DIR or /run/user/UID, if it is the user's and no one else
// may write to it; else in the temporary directory, which other users share.
// Whoever uses it checks it first (see checkHoldDir).
func HoldDir(stateDir string) string {
	uid := os.Geteuid()
	if uid == 0 {
		return filepath.Join(stateDir, ".sandbox")
	}
	for _, d := range []string{os.Getenv("XDG_RUNTIME_DIR"), "/run/user/" + strconv.Itoa(uid)} {
		fi, err := os.Lstat(d)
		if filepath.IsAbs(d) && err == nil && fi.IsDir() && owner(fi) == uid && fi.Mode().Perm()&0o022 == 0 {
			return filepath.Join(d, "nsrun-sandbox")
		}
	}
	tmp := os.TempDir()
	if real, err := filepath.EvalSymlinks(tmp); err == nil {
		tmp = real // checkHoldDir admits no symlink on the way
	}
	return filepath.Join(tmp, "nsrun-sandbox-"+strconv.Itoa(uid))
}

// An UntrustedError says why a kept sandbox's directory or socket is not
// used: someone else may have made it, to be sent the commands, the
// environment and the terminals of this user's nsrun.
type UntrustedError struct {
	Path string
	Why  string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("kept sandboxes: not using %s: %s", e.Path, e.Why)
}

// checkHoldDir makes sure no one but this user (and root) can have put or
// replaced anything in dir: it must be a directory, not a symlink, owned by
// the effective uid, with no permission for group or others; each directory
// above it must be root's or the user's, and sticky if others may write to
// it (as /tmp is), so that no one else can rename dir away and put another
// in its place. A missing dir is made, with create, else reported as
// fs.ErrNotExist.
func checkHoldDir(dir string, create bool) error {
	uid := os.Geteuid()
	untrusted := func(format string, args ...any) error {
		why := fmt.Sprintf(format, args...)
		if uid != 0 {
			why += "; set XDG_RUNTIME_DIR to a directory of yours only you can enter (mode 0700), for nsrun to use instead"
		}
		return &UntrustedError{dir, why}
	}
	above := func() error {
		for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
			fi, err := os.Lstat(p)
			switch {
			case err != nil:
				return err
			case !fi.IsDir():
				return untrusted("%s, on its path, is not a directory (%v)", p, fi.Mode())
			case owner(fi) != 0 && owner(fi) != uid:
				return untrusted("%s, on its path, is owned by uid %d (mode %v), not by you (uid %d) or root", p, owner(fi), fi.Mode(), uid)
			case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
				return untrusted("%s, on its path, is writable by others (mode %v) and not sticky: they could replace what is in it", p, fi.Mode())
			}
			if p == filepath.Dir(p) {
				return nil
			}
		}
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		if err := above(); err != nil {
			return err // made there, it could be replaced
		}
		if err = os.Mkdir(dir, 0o700); err == nil {
			err = os.Chmod(dir, 0o700) // whatever the umask
		} else if errors.Is(err, fs.ErrExist) {
			err = nil // another nsrun made it meanwhile: checked below
		}
		if err != nil {
			return err
		}
		fi, err = os.Lstat(dir)
	}
	switch {
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return untrusted("it is a symlink")
	case !fi.IsDir():
		return untrusted("it is not a directory (%v)", fi.Mode())
	case owner(fi) != uid:
		return untrusted("it is owned by uid %d (mode %v), not by you (uid %d)", owner(fi), fi.Mode(), uid)
	case fi.Mode().Perm()&0o077 != 0:
		return untrusted("its mode %v lets others in (it must be drwx------)", fi.Mode())
	}
	return above()
}

func owner(fi fs.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }

// request is what a client sends, once, with its standard files.
type request struct {
	Labs bool     `json:"labs,omitempty"` // only list the labs in the sandbox
	Args []string `json:"args,omitempty"` // an nsrun command line
	Dir  string   `json:"dir,omitempty"`
	Env  []string `json:"env,omitempty"`
}

// message is what passes after the request: signals from the client; the
// labs, or the command's exit, from the holder.
type message struct {
	Signal int      `json:"signal,omitempty"`
	Labs   []string `json:"labs,omitempty"`
	Exit   *int     `json:"exit,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// holdEnd is the outside's side of a sandbox that may be kept: the
// listening socket, the pipe on which the inside tells it holds, and
// HoldDir's parent (the files the inside gets as fds 3, 4 and 5).
type holdEnd struct {
	dir, path     string
	sock, parent  *os.File
	ready, readyW *os.File
	held          bool
}

func newHoldEnd(dir string, id int) (*holdEnd, error) {
	if err := checkHoldDir(dir, true); err != nil {
		return nil, err
	}
	h := &holdEnd{dir: dir, path: filepath.Join(dir, strconv.Itoa(id)+holdSock)}
	os.Remove(h.path) // a socket of a sandbox that died with the same id
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: h.path, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false) // the holder, not this process, removes it
	h.sock, err = l.File()
	l.Close()
	if err == nil {
		h.ready, h.readyW, err = os.Pipe()
	}
	if err == nil {
		h.parent, err = os.OpenFile(filepath.Dir(dir), unix.O_PATH|unix.O_DIRECTORY, 0)
	}
	if err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

func (h *holdEnd) files() []*os.File { return []*os.File{h.sock, h.readyW, h.parent} }

// wait returns the code the inside passed to Hold, once it holds (held),
// or held false if it ended without holding. Call it after the start.
func (h *holdEnd) wait() (code int, held bool) {
	h.readyW.Close() // the inside's copy is the only writer left
	var b [1]byte
	if n, _ := h.ready.Read(b[:]); n == 1 {
		h.held = true
		return int(b[0]), true
	}
	return 0, false
}

// close releases the files, and the socket's name unless the sandbox is
// held (its holder removes it).
func (h *holdEnd) close() {
	for _, f := range []*os.File{h.sock, h.ready, h.readyW, h.parent} {
		if f != nil {
			f.Close()
		}
	}
	if !h.held {
		os.Remove(h.path)
		os.Remove(h.dir) // if it was the last one
	}
}

// CanHold reports whether this process is the inside of a sandbox that was
// asked to be kept.
func CanHold() bool { return canHold }

var canHold = func() bool {
	v := os.Getenv(holdEnv) == "1"
	os.Unsetenv(holdEnv)
	return v
}()

// Hold turns this process, the inside of a kept sandbox whose command ended
// with code, into the sandbox's holder: it tells the outside the code (so
// that the command returns), leaves the terminal, and serves commands until
// labs, called after each, returns none. It does not return.
func Hold(code int, labs func() []string) {
	ln, err := net.FileListener(os.NewFile(3, "hold"))
	ready := os.NewFile(4, "ready")
	if err != nil {
		os.Exit(code)
	}
	unix.Setsid()
	if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for fd := 0; fd < 3; fd++ {
			unix.Dup2(int(null.Fd()), fd)
		}
		null.Close()
	}
	signal.Reset()
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() { <-term; ln.Close() }() // SIGTERM ends the sandbox, and all in it
	ready.Write([]byte{byte(code)})
	ready.Close()
	path := ln.Addr().String()
	defer func() {
		dir := filepath.Base(filepath.Dir(path))
		unix.Unlinkat(5, filepath.Join(dir, filepath.Base(path)), 0)
		unix.Unlinkat(5, dir, unix.AT_REMOVEDIR) // if it was the last one
		if id, err := strconv.Atoi(os.Getenv(IDEnv)); err == nil {
			killSandboxed(id)
		}
		os.Exit(code)
	}()
	if len(labs()) == 0 {
		return
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed: the last lab is gone
		}
		go func() {
			serve(c.(*net.UnixConn), labs)
			if len(labs()) == 0 {
				ln.Close()
			}
		}()
	}
}

// serve answers one client.
func serve(c *net.UnixConn, labs func() []string) {
	defer c.Close()
	if !trusted(c) {
		return
	}
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	files := receivedFiles(oob[:oobn])
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var req request
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		return
	}
	if req.Labs {
		send(c, message{Labs: labs()})
		return
	}
	if len(req.Args) == 0 || len(files) != 3 {
		send(c, message{Error: "a command and three files are needed"})
		return
	}
	cmd := exec.Command("/proc/self/exe", req.Args...)
	cmd.Args[0] = "nsrun"
	cmd.Dir = req.Dir
	cmd.Env = append(withoutSandboxVars(req.Env), IDEnv+"="+os.Getenv(IDEnv))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	if err := cmd.Start(); err != nil {
		send(c, message{Error: err.Error()})
		return
	}
	done := make(chan struct{})
	go func() { // the client's signals, until it hangs up
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			var m message
			if json.Unmarshal(buf[:n], &m) == nil && m.Signal > 0 {
				select {
				case <-done:
					return
				default:
					cmd.Process.Signal(syscall.Signal(m.Signal))
				}
			}
		}
	}()
	code := exitCode(cmd.Wait())
	close(done)
	send(c, message{Exit: &code})
}

// trusted reports whether the peer is this process's user (or root): the
// socket's directory admits no one else, but the check costs nothing.
func trusted(c *net.UnixConn) bool {
	cred, err := peer(c)
	return err == nil && (cred.Uid == 0 || int(cred.Uid) == os.Geteuid())
}

// peer returns the credentials of the process at the other end of c (for a
// client, the one that listened), as this process's user namespace sees
// them.
func peer(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	if cerr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); cerr != nil {
		return nil, cerr
	}
	return cred, err
}

func receivedFiles(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "passed"))
		}
	}
	return files
}

func send(c *net.UnixConn, m message) error {
	b, _ := json.Marshal(m)
	_, err := c.Write(b)
	return err
}

func withoutSandboxVars(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "NSRUN_SANDBOX") {
			out = append(out, kv)
		}
	}
	return out
}

// exitCode is ExitCode, 127 for a command that could not be waited for.
func exitCode(err error) int {
	code, err := nsexec.ExitCode(err)
	if err != nil {
		return 127
	}
	return code
}

// A Kept is the socket of a held sandbox.
type Kept struct{ Path string }

// ID is the sandbox's id, as `nsrun ls` shows it.
func (s Kept) ID() string { return strings.TrimSuffix(filepath.Base(s.Path), holdSock) }

// ListKept lists the sockets of this user's kept sandboxes in dir
// (HoldDir), once dir is found to be the user's own (see checkHoldDir). One
// whose holder is gone is removed by the first call that finds it refused
// (see dial).
func ListKept(dir string) ([]Kept, error) {
	if err := checkHoldDir(dir, false); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*"+holdSock))
	out := make([]Kept, len(paths))
	for i, p := range paths {
		out[i] = Kept{p}
	}
	return out, nil
}

// dial connects to the sandbox's holder, in a directory checked again, and
// makes sure the socket is this user's before anything is sent. The
// kernel's SO_PEERCRED gives the credentials of the process that listened,
// translated into this process's user namespace: the sandbox's launcher,
// which listened before the sandbox started, so the user's own uid (an
// unprivileged user's holder is root only in the sandbox's user namespace).
func (s Kept) dial() (*net.UnixConn, error) {
	if err := checkHoldDir(filepath.Dir(s.Path), false); err != nil {
		return nil, err
	}
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: s.Path, Net: "unixpacket"})
	if errors.Is(err, syscall.ECONNREFUSED) {
		os.Remove(s.Path) // its holder is gone (killed): so is the sandbox
	}
	if err != nil {
		return nil, err
	}
	cred, err := peer(c)
	if err == nil && int(cred.Uid) != os.Geteuid() {
		err = &UntrustedError{s.Path, fmt.Sprintf("the process listening on it (pid %d) is uid %d, not you (uid %d)", cred.Pid, cred.Uid, os.Geteuid())}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Holder returns the pid of the process that holds the sandbox (the one
// to kill to end it): the first process started inside it, which carries
// its id (see IDEnv); 0 if none is found.
func (s Kept) Holder() int {
	holder, first := 0, uint64(0)
	for _, pid := range proc.Pids() {
		if v, ok := proc.Env(pid, IDEnv); !ok || v != s.ID() {
			continue
		}
		st, err := proc.ReadStat(pid)
		if err != nil {
			continue
		}
		if holder == 0 || st.Start < first {
			holder, first = pid, st.Start
		}
	}
	return holder
}

// Labs lists the labs in the sandbox.
func (s Kept) Labs() ([]string, error) {
	c, err := s.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	b, _ := json.Marshal(request{Labs: true})
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	var m message
	if err := receive(c, &m); err != nil {
		return nil, err
	}
	return m.Labs, nil
}

// Run runs the nsrun command line args in the sandbox with this process's
// standard files, passes SIGINT, SIGTERM, SIGHUP and SIGQUIT on, and returns
// its exit code.
func (s Kept) Run(args []string, stdin, stdout, stderr *os.File) (int, error) {
	c, err := s.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	dir, _ := os.Getwd()
	b, _ := json.Marshal(request{Args: args, Dir: dir, Env: os.Environ()})
	rights := unix.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()))
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if _, _, err := c.WriteMsgUnix(b, rights, nil); err != nil {
		return 0, err
	}
	go func() {
		for sig := range sigs {
			send(c, message{Signal: int(sig.(syscall.Signal))})
		}
	}()
	var m message
	if err := receive(c, &m); err != nil {
		return 0, fmt.Errorf("the sandbox's holder hung up: %w", err)
	}
	if m.Exit == nil {
		return 0, fmt.Errorf("the sandbox's holder: %s", m.Error)
	}
	return *m.Exit, nil
}

func receive(c *net.UnixConn, m *message) error {
	buf := make([]byte, 1<<16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	return json.Unmarshal(buf[:n], m)
}
