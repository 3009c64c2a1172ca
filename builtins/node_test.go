package builtins_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// A node's private directories and files are what its processes see, and
// nothing of the machine's changes (nstest's snapshot lists /etc, /run,
// /var/lib and /var/log); rollback removes them from the lab's directory.
func TestNodeFiles(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	out, rt, err := runSrc(t, k, "n.star", `
r = netns("r1", private = ["/run/nsrun-test-d", "/var/lib/nsrun-test/deep"], private_owner = "nobody")
r.write_file("/etc/hostname", "r1\n", mode = 0o600)
r.write_file("/etc/nsrun-test/new.conf", "new\n")
r.write_file("/run/nsrun-test-d/in", "in private\n")
print(exec_in(r, "stat -c '%A %U %n' /run/nsrun-test-d /var/lib/nsrun-test/deep /etc/hostname").stdout)
print(exec_in(r, "cat /etc/hostname /etc/nsrun-test/new.conf /run/nsrun-test-d/in").stdout)
exec_in(r, "echo out > /var/lib/nsrun-test/deep/out; test -d /proc/self && test -e /dev/null")
print(r.read_file("/var/lib/nsrun-test/deep/out").strip(), r.read_file("/etc/nsrun-test/new.conf").strip())
r.write_file("/etc/hostname", "second\n")
print(exec_in(r, "cat /etc/hostname").stdout.strip())
other = netns("r2")
print(exec_in(other, "test -e /run/nsrun-test-d || test -e /etc/nsrun-test || echo unseen").stdout.strip())
`)
	defer rollback(t, rt)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	want := `drwxr-xr-x nobody /run/nsrun-test-d
drwxr-xr-x nobody /var/lib/nsrun-test/deep
-rw------- root /etc/hostname

r1
new
in private

out new
second
unseen
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	machine, _ := os.ReadFile("/etc/hostname")
	if strings.Contains(string(machine), "r1") || strings.Contains(string(machine), "second") {
		t.Errorf("the machine's /etc/hostname changed: %q", machine)
	}
	// A session's rollback of the second write puts the first back.
	undone, failed := rt.Rollback(rt.Journal.Len() - 2)
	if len(failed) > 0 || len(undone) != 2 {
		t.Fatalf("undone %v, failed %v", undone, failed)
	}
	node := filepath.Join(rt.Dir, "nodes", "r1", "files", "%2Fetc%2Fhostname")
	if b, err := os.ReadFile(node); err != nil || string(b) != "r1\n" {
		t.Errorf("after the rollback of the rewrite: %q, %v", b, err)
	}
	rollback(t, rt)
	left, _ := filepath.Glob(filepath.Join(rt.Dir, "nodes", "*", "*", "*"))
	if len(left) > 0 {
		t.Errorf("the rollback left %q", left)
	}
}

// A node's files are checked before any change: paths, owners, host().
func TestNodeFilesValidation(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`netns("a", private = ["run/x"])`, `"run/x" is not an absolute path`},
		{`netns("a", private = ["/run/../etc"])`, `is not a clean path`},
		{`netns("a", private = ["/"])`, `the root directory cannot be a node's own`},
		{`netns("a", private = ["/proc/x"])`, `is under /proc`},
		{`netns("a", private = ["/run/a,b"])`, `comma, colon or backslash`},
		{`netns("a", private = "/run/x")`, `want a list of absolute paths`},
		{`netns("a", private = ["/run/x", "/run/x/y"])`, `/run/x and /run/x/y overlap`},
		{`netns("a", private = ["/run/x"], private_owner = "no-such-user-here")`, `no user "no-such-user-here"`},
		{`netns("a").write_file("/sys/class/x", "")`, `is under /sys`},
		{`netns("a").write_file("etc/x", "")`, `not an absolute path`},
		{`netns("a").write_file("/etc/x", "", mode = 0o17777)`, `is not a file mode`},
		{`netns("a").write_file("/etc/x", "", owner = "no-such-user-here")`, `no user`},
		{`host().write_file("/etc/x", "")`, `host() shows the machine's own files`},
		{`host().read_file("/etc/x")`, `host() shows the machine's own files`},
	} {
		_, rt, err := runSrc(t, kernel.NewRecorder(), "v.star", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(engine.Backtrace(err), "v.star:1:") {
			t.Errorf("%s: err = %v, want %q at v.star:1", c.src, err, c.want)
		}
		rollback(t, rt)
	}
}

// spawn_in waits until its process is ready, by each kind of readiness;
// one that exits with an error first fails the recipe at its line, with
// the end of its log; its output is in its log (p.log()).
func TestSpawnReady(t *testing.T) {
	nstest.Kernel(t)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	out, rt, err := runSrc(t, k, "s.star", `
n = netns("sp", private = ["/run/svc"])
p = spawn_in(n, "echo starting; sleep 0.1; echo listening now; exec sleep 300", ready = "log:^listening")
print(p.name, p.log().split("\n"))
spawn_in(n, ["python3", "-c", "import socket,time; s=socket.socket(socket.AF_UNIX); s.bind('/run/svc/sock'); s.listen(); time.sleep(300)"], name = "usock", ready = "unix:/run/svc/sock")
spawn_in(n, ["python3", "-c", "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(); time.sleep(300)"], name = "web", ready = "tcp:8080")
spawn_in(n, ["python3", "-c", "import socket,time; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(('::', 5353)); time.sleep(300)"], name = "dns", ready = "udp:5353")
spawn_in(n, "sleep 0.1; touch /run/svc/done; exec sleep 300", name = "toucher", ready = "file:/run/svc/done")
spawn_in(n, "(sleep 300 &); exit 0", name = "daemonizer", ready = lambda: n.read_file("/run/svc/done") == "")
e = spawn_in(n, "echo $GREETING from $(pwd); exec sleep 300", name = "env", env = {"GREETING": "hi"}, cwd = "/run/svc", ready = "log:hi")
print(e.log().strip())
p.stop()
`)
	defer rollback(t, rt)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	if want := "echo [\"starting\", \"listening now\", \"\"]\nhi from /run/svc\n"; out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	_, rt2, err := runSrc(t, k, "z.star", `
n = netns("sz")
spawn_in(n, "echo 'privs_init: user(root) is not part of vty group' >&2; exit 1", name = "zebra", ready = "unix:/run/frr/zserv.api")
`)
	rollback(t, rt2)
	bt := engine.Backtrace(err)
	if err == nil || !strings.Contains(bt, "z.star:3:9") || !strings.Contains(bt, "exited with status 1 before it was ready") || !strings.Contains(bt, "privs_init: user(root) is not part of vty group") {
		t.Errorf("err = %s", bt)
	}
	_, rtc, err := runSrc(t, k, "c.star", "def bad():\n    return 1 // 0\nspawn_in(netns(\"sc\"), \"exec sleep 300\", ready = bad)\n")
	rollback(t, rtc)
	if bt := engine.Backtrace(err); err == nil || !strings.Contains(bt, "c.star:3:9") || !strings.Contains(bt, "division by zero") {
		t.Errorf("a failing ready callable: %s", bt)
	}
	_, rt3, err := runSrc(t, k, "t.star", `spawn_in(netns("st"), "exec sleep 300", ready = "tcp:9", timeout = "100ms")`)
	rollback(t, rt3)
	if err == nil || !strings.Contains(err.Error(), "not ready (tcp:9) after 100ms (its log is empty)") {
		t.Errorf("err = %v", err)
	}
}

// spawn_in's arguments are checked before anything is started.
func TestSpawnValidation(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`spawn_in(netns("a"), "x", ready = "http:80")`, `want "unix:PATH", "file:PATH", "tcp:PORT", "udp:PORT", "log:REGEX" or a callable`},
		{`spawn_in(netns("a"), "x", ready = "tcp:0")`, `"0" is not a port`},
		{`spawn_in(netns("a"), "x", ready = "log:(")`, `missing closing )`},
		{`spawn_in(netns("a"), "x", ready = "unix:run/x")`, `not an absolute path`},
		{`spawn_in(netns("a"), "x", ready = 3)`, `got int, want`},
		{`spawn_in(netns("a"), "x", timeout = "-1s")`, `is not a positive duration`},
		{`spawn_in(netns("a"), "x", name = "a/b")`, `is not a process name`},
		{`spawn_in(netns("a"), "x", env = ["A=1"])`, `want a dict of strings`},
		{`spawn_in(netns("a"), "x", cwd = "tmp")`, `not an absolute path`},
	} {
		_, rt, err := runSrc(t, kernel.NewRecorder(), "v.star", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(engine.Backtrace(err), "v.star:1:") {
			t.Errorf("%s: err = %v, want %q at v.star:1", c.src, err, c.want)
		}
		rollback(t, rt)
	}
}

// ping's src, size, df and ttl, and tcp_connect, as the kernel takes them.
func TestPingOptionsAndTCPConnect(t *testing.T) {
	out, _ := onKernel(t, "p.star", `
a = netns("pa")
r = netns("pr")
b = netns("pb")
r.sysctl("net.ipv4.ip_forward", "1")
x, y = veth("pa0", "pr0", netns = a, peer_netns = r, mtu = 1400)
x.addr("10.5.0.1/24", "10.5.0.11/24").up()
y.addr("10.5.0.2/24").up()
u, v = veth("pr1", "pb0", netns = r, peer_netns = b)
u.addr("10.6.0.1/24").up()
v.addr("10.6.0.2/24").up()
a.route("10.6.0.0/24", via = "10.5.0.2")
b.route("10.5.0.0/24", via = "10.6.0.1")
a.link("lo").addr("10.9.9.9/32")  # an address pb has no route back to
print(ping(a, "10.6.0.2", src = "10.5.0.11", count = 1).ok, ping(a, "10.6.0.2", src = "10.9.9.9", count = 1, timeout = "200ms").ok)
print(ping(a, "10.5.0.2", size = 1400, df = True, count = 1).error, ping(a, "10.5.0.2", size = 1372, df = True, count = 1).ok)
print(ping(a, "10.6.0.2", ttl = 1, count = 1).error, ping(a, "10.6.0.2", ttl = 2, count = 1).ok)
print(tcp_connect(a, "10.6.0.2", 80).error)
spawn_in(b, ["python3", "-c", "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(); time.sleep(300)"], name = "web", ready = "tcp:8080")
c = tcp_connect(a, "10.6.0.2", 8080)
print(c.ok, c.error, c.rtt_ms > 0)
print(tcp_connect(a, "10.7.0.2", 8080).error)
`)
	want := `True False
message too long True
time to live exceeded True
connection refused
True  True
network is unreachable
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

// A capture on a bridge sees what the bridge forwards (it is promiscuous
// while it lasts, as tcpdump is), and leaves the bridge as it was.
func TestCaptureOnBridge(t *testing.T) {
	out, _ := onKernel(t, "c.star", `
sw = netns("csw")
br = bridge("cbr0", netns = sw).up()
hosts = []
for i in (1, 2):
    h = netns("ch%d" % i)
    p, e = veth("cp%d" % i, "eth0", netns = sw, peer_netns = h)
    p.master(br).up()
    e.addr("10.9.0.%d/24" % i).up()
    hosts.append(h)
ping(hosts[0], "10.9.0.2", count = 1)
c = capture(sw, "cbr0", filter = "icmp")
ping(hosts[0], "10.9.0.2", count = 10, interval = "10ms")
print(c.stop()["icmp"])
`)
	if out != "20\n" {
		t.Errorf("the bridge's capture counted %q ICMP packets, want 20", out)
	}
	if got := nstest.Ip(t, "csw", "-d", "link", "show", "cbr0"); !strings.Contains(got, "promiscuity 0 ") {
		t.Errorf("the bridge is left promiscuous:\n%s", got)
	}
}
