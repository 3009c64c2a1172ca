package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
	"golang.org/x/sys/unix"
)

// attackerEnv makes this test binary the attacker of TestCrossUser: it
// listens on the sockets named in it (':'-separated), making their
// directories, and plays a kept sandbox's holder to whoever connects,
// printing what it receives.
const attackerEnv = "NSRUN_TEST_ATTACKER"

func init() {
	if paths := os.Getenv(attackerEnv); paths != "" {
		attack(strings.Split(paths, ":"))
		os.Exit(0)
	}
}

// attack serves the sockets at paths until its standard input closes. Each
// line it prints is what one client did: "connect PATH", then "data PATH N
// bytes, K fds: CONTENT" for what the client sent. It answers a request for
// the labs with one named somelab, and a command by writing "ATTACKER WAS
// HERE" into the output it was passed and telling it succeeded.
func attack(paths []string) {
	var mu sync.Mutex
	log := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	for _, path := range paths {
		os.MkdirAll(filepath.Dir(path), 0o777)
		os.Chmod(filepath.Dir(path), 0o777) // anyone may make a socket there
		l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
		if err != nil {
			log("error %v", err)
			os.Exit(1)
		}
		os.Chmod(path, 0o777) // anyone may connect
		go func() {
			for {
				c, err := l.AcceptUnix()
				if err != nil {
					return
				}
				log("connect %s", path)
				go fakeHolder(c, path, log)
			}
		}()
	}
	log("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, path := range paths {
		os.Remove(path)
	}
}

func fakeHolder(c *net.UnixConn, path string, log func(string, ...any)) {
	defer c.Close()
	buf, oob := make([]byte, 1<<16), make([]byte, 1024)
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if got, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	log("data %s %d bytes, %d fds: %q", path, n, len(fds), buf[:n])
	var req struct{ Labs bool }
	json.Unmarshal(buf[:n], &req)
	if req.Labs {
		c.Write([]byte(`{"labs":["somelab"]}`))
		return
	}
	if len(fds) > 1 {
		unix.Write(fds[1], []byte("ATTACKER WAS HERE\tup\t1\t-\t-\n"))
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	c.Write([]byte(`{"exit":0}`))
}

// asUser runs the binary as uid (and gid uid) from dir with env, in a mount
// namespace of its own where /run is empty (no /run/user/UID to prefer),
// and returns what it printed.
func asUser(t *testing.T, uid int, dir string, env []string, args ...string) result {
	t.Helper()
	script := fmt.Sprintf(`mount -n --make-rprivate / && mount -n -t tmpfs tmpfs /run && exec setpriv --reuid=%d --regid=%d --clear-groups "$@"`, uid, uid)
	cmd := exec.Command("unshare", append([]string{"-m", "sh", "-c", script, "sh", filepath.Join(dir, "nsrun")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"}, env...)
	return runCmd(t, cmd)
}

// Two users share a temporary directory and have no XDG_RUNTIME_DIR: the
// directory where one's kept sandboxes would have their sockets is one the
// other may make first. The victim's nsrun refuses it, as it refuses an
// XDG_RUNTIME_DIR that is not the victim's (su keeps the one of the user
// who ran it): it connects to no socket there, so that neither its
// environment nor its terminal reach the other user, and says why. Made by
// the victim's nsrun, the directory serves a kept sandbox as it should.
func TestCrossUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run as two users")
	}
	nstest.Kernel(t)
	const victim, attacker = 65534, 65533
	const secret = "SECRET_TOKEN=crossuser-3f9a1c"
	dir := publicDir(t)
	copyFile(t, nsrunBin, filepath.Join(dir, "nsrun"), 0o755)
	copyFile(t, "../../recipes/openvnet.star", filepath.Join(dir, "openvnet.star"), 0o644)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, filepath.Join(dir, "attacker"), 0o755)
	tmp := filepath.Join(dir, "tmp") // the shared TMPDIR, as /tmp is
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	xdg := filepath.Join(dir, "xdg") // the attacker's runtime directory
	if err := os.Mkdir(xdg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(xdg, attacker, attacker); err != nil {
		t.Fatal(err)
	}
	victimDir := filepath.Join(tmp, fmt.Sprintf("nsrun-sandbox-%d", victim))
	planted := []string{filepath.Join(victimDir, "12345.sock"), filepath.Join(xdg, "nsrun-sandbox", "12346.sock")}
	env := []string{"TMPDIR=" + tmp, secret, "NSRUN_TEST_CROSSUSER=1"}
	t.Cleanup(func() { // the victim's processes carry neither the test's mark nor a lab's
		if left := endMarked("NSRUN_TEST_CROSSUSER=1\x00"); left != "" {
			t.Errorf("the victim's processes were left running: %s", left)
		}
	})

	// The attacker makes the directory first, with a socket in it.
	cmd := exec.Command(filepath.Join(dir, "attacker"))
	cmd.Env = []string{attackerEnv + "=" + strings.Join(planted, ":")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: attacker, Gid: attacker}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	done := make(chan struct{})
	ready := make(chan bool, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
				continue
			}
			lines = append(lines, sc.Text())
		}
		ready <- false
	}()
	stopped := false
	stop := func() []string {
		if !stopped {
			stopped = true
			stdin.Close()
			<-done
			cmd.Wait()
		}
		return lines
	}
	t.Cleanup(func() { stop() })
	if !<-ready {
		t.Fatalf("the attacker did not start: %v", stop())
	}
	for _, p := range planted {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("the attacker's socket: %v", err)
		}
	}

	refused := func(what string, r result) {
		t.Helper()
		for _, want := range []string{"not using " + victimDir, "owned by uid 65533", "XDG_RUNTIME_DIR"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s: stderr lacks %q: %+v", what, want, r)
			}
		}
		if strings.Contains(r.stdout, "ATTACKER") || strings.Contains(r.stderr, "ATTACKER") {
			t.Errorf("%s: the attacker wrote into the victim's output: %+v", what, r)
		}
	}
	r := asUser(t, victim, dir, env, "ls")
	refused("ls", r)
	if strings.Contains(r.stdout, "somelab") {
		t.Errorf("ls lists the attacker's lab: %+v", r)
	}
	r = asUser(t, victim, dir, env, "exec", "somelab", "ns1", "--", "true")
	refused("exec", r)
	if r.code == 0 {
		t.Errorf("exec in the attacker's sandbox exits 0: %+v", r)
	}
	r = asUser(t, victim, dir, append(env, "XDG_RUNTIME_DIR="+xdg), "exec", "somelab", "ns1", "--", "true")
	refused("exec with the attacker's XDG_RUNTIME_DIR", r)
	if r.code == 0 {
		t.Errorf("exec with the attacker's XDG_RUNTIME_DIR exits 0: %+v", r)
	}
	r = asUser(t, victim, dir, env, "run", "--sandbox", "--keep", "openvnet.star")
	if r.code == 0 {
		t.Cleanup(func() { asUser(t, victim, dir, env, "down", "openvnet") })
	}
	refused("run --sandbox --keep", r)
	if r.code == 0 || !strings.Contains(r.stderr, "making the sandbox's socket") {
		t.Errorf("run --sandbox --keep in the attacker's directory: %+v", r)
	}
	if got := stop(); len(got) > 0 {
		t.Errorf("the attacker's sockets were reached:\n%s", strings.Join(got, "\n"))
	}
	if got := strings.Join(lines, "\n"); strings.Contains(got, "SECRET_TOKEN") {
		t.Errorf("the attacker has the victim's secret")
	}

	// Without the attacker's directory, the victim's nsrun makes its own,
	// private, and keeps a sandbox there.
	if err := os.RemoveAll(victimDir); err != nil {
		t.Fatal(err)
	}
	if r := asUser(t, victim, dir, env, "run", "--sandbox", "--keep", "openvnet.star"); r.code != 0 {
		t.Fatalf("run --sandbox --keep in a TMPDIR shared with another user: %+v", r)
	}
	t.Cleanup(func() { asUser(t, victim, dir, env, "down", "openvnet") })
	if fi, err := os.Lstat(victimDir); err != nil || fi.Mode() != os.ModeDir|0o700 || fi.Sys().(*syscall.Stat_t).Uid != victim {
		t.Errorf("the directory of the victim's sockets: %v, %v", fi, err)
	}
	if r := asUser(t, victim, dir, env, "exec", "openvnet", "ns1", "--", "ip", "-br", "addr", "show", "ns-veth1"); r.code != 0 || !strings.Contains(r.stdout, "172.16.1.1/24") {
		t.Errorf("exec in the kept sandbox: %+v", r)
	}
	if r := asUser(t, victim, dir, env, "ls"); r.code != 0 || !strings.Contains(r.stdout, "openvnet") || r.stderr != "" {
		t.Errorf("ls of the kept sandbox: %+v", r)
	}
	if r := asUser(t, attacker, dir, env, "exec", "openvnet", "ns1", "--", "true"); r.code == 0 {
		t.Errorf("another user's exec reaches the victim's kept sandbox: %+v", r)
	}
	if r := asUser(t, victim, dir, env, "down", "openvnet"); r.code != 0 {
		t.Errorf("down: %+v", r)
	}
	waitNoHolders(t, victimDir)
}

// endMarked waits a while (10s) for the processes whose environment holds
// mark to end, then kills them, and returns those it found left.
func endMarked(mark string) (left string) {
	for i := 0; i < 500; i++ {
		if left = nstest.Processes(mark); left == "" {
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 100 && nstest.Processes(mark) != ""; i++ {
		for _, m := range regexp.MustCompile(`(?:^|, )(\d+):`).FindAllStringSubmatch(nstest.Processes(mark), -1) {
			pid, _ := strconv.Atoi(m[1])
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return left
}
