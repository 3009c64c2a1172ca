package nstest

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/sandbox"
)

// Where the sandbox keeps named namespaces and lab records (private to it).
const (
	NetnsDir = "/run/netns"
	StateDir = "/run/nsrun"
)

// Main runs the tests, as root inside a sandbox of their own, and exits.
func Main(m *testing.M) { MainWith(m, nil) }

// MainWith is Main with a setup that runs once, in the process that runs the
// tests, and returns its teardown.
func MainWith(m *testing.M, setup func() (teardown func())) {
	nsexec.MaybeHelper()
	if os.Geteuid() == 0 && !sandbox.Inside() {
		code, err := sandbox.Run("")
		if err != nil {
			fmt.Fprintln(os.Stderr, "nstest:", err)
			os.Exit(1)
		}
		os.Exit(code)
	}
	if sandbox.Inside() {
		if err := sandbox.Setup(NetnsDir, StateDir); err != nil {
			fmt.Fprintln(os.Stderr, "nstest: setting up the sandbox:", err)
			os.Exit(1)
		}
		k := kernel.NewNetlink(NetnsDir)
		err := k.LinkSetUp(kernel.Host, "lo", true)
		k.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "nstest: lo up:", err)
			os.Exit(1)
		}
	}
	if setup != nil {
		teardown := setup()
		code := m.Run()
		teardown()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// Kernel skips t unless it runs as root in the sandbox, and registers a
// check that t leaves no namespace, link, address, route, lab record or child
// process behind.
func Kernel(t testing.TB) {
	t.Helper()
	if !sandbox.Inside() {
		t.Skip("needs root (real-kernel test; runs inside a sandbox)")
	}
	before := Snapshot(t)
	t.Cleanup(func() {
		if after := Snapshot(t); after != before {
			t.Errorf("the test left something behind:\n--- before\n%s\n--- after\n%s", before, after)
		}
	})
}

// Snapshot describes the sandbox as independent tools see it: named
// namespaces, the root namespace's links, addresses and routes (iproute2),
// lab records, and this process's children.
func Snapshot(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "netns: %s\n", dir(NetnsDir))
	fmt.Fprintf(&b, "labs: %s\n", dir(StateDir))
	// Details (-d: alias, master, MTU, MAC, bridge and veth settings), no
	// counters: a foreign link changed in any way shows.
	fmt.Fprintf(&b, "links: %s\n", StripTimers(Ip(t, "", "-d", "-o", "link")))
	fmt.Fprintf(&b, "addrs: %s\n", Ip(t, "", "-br", "addr"))
	fmt.Fprintf(&b, "routes: %s\n", Ip(t, "", "route"))
	fmt.Fprintf(&b, "processes: %s\n", processes())
	if out, err := exec.Command("nft", "list", "ruleset").Output(); err == nil {
		fmt.Fprintf(&b, "nftables: %s\n", out)
	}
	fmt.Fprintf(&b, "files: %s\n", files())
	return b.String()
}

// watched are the machine's directories where a daemon in a lab would leave
// its files: what nsrun shows a node (private directories, written files)
// must never reach them. Each entry is listed four levels deep, with its
// type; under /etc, where configurations live, a small file's size and
// content too (a file overwritten in place shows). Elsewhere content is left
// out: the machine's own services write their logs and state there as they
// go. (/tmp is left out: tests make their temporary directories there.)
var watched = []struct {
	root    string
	content bool
}{{"/etc", true}, {"/run", false}, {"/var/run", false}, {"/var/lib", false}, {"/var/log", false}}

// DecoyDir is where tests put files of the machine's own for nsrun to
// leave alone; the snapshot of other tests, which may run at the same
// time, does not list it.
const DecoyDir = "/run/nsrun-test-decoy"

// files lists what is in the watched directories.
func files() string {
	var b strings.Builder
	for _, w := range watched {
		filepath.WalkDir(w.root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if path == NetnsDir || path == StateDir || path == DecoyDir {
				return filepath.SkipDir // the sandbox's own, and the tests' decoys
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			fmt.Fprintf(&b, "%s %s", path, info.Mode().Type())
			if w.content && info.Mode().IsRegular() && info.Size() <= 64<<10 {
				if data, err := os.ReadFile(path); err == nil {
					fmt.Fprintf(&b, " %d %08x", len(data), crc32.ChecksumIEEE(data))
				}
			}
			b.WriteByte('\n')
			if d.IsDir() && strings.Count(path, "/") >= 4 {
				return filepath.SkipDir
			}
			return nil
		})
	}
	return b.String()
}

// timers matches the running timers iproute2 shows of bridges and their
// ports (gc_timer 299.86, "hello_timer":0.00): they tick by themselves.
var timers = regexp.MustCompile(`"?[a-z_]+_timer"?[: ]+[0-9.]+,?`)

// StripTimers removes the running timers from iproute2's detailed output.
func StripTimers(s string) string { return timers.ReplaceAllString(s, "") }

func dir(path string) string {
	entries, _ := os.ReadDir(path)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// processes lists the processes started inside this sandbox (they carry its
// id in their environment), wherever they were reparented to, but this one.
func processes() string {
	id := os.Getenv(sandbox.IDEnv)
	if id == "" {
		return ""
	}
	return Processes(sandbox.IDEnv + "=" + id + "\x00")
}

// Processes lists the live processes, but this one, whose environment
// holds mark, "KEY=VALUE" ("KEY=VALUE\x00": exactly that value), as
// "PID:COMMAND LINE", by pid.
func Processes(mark string) string {
	key, want, _ := strings.Cut(mark, "=")
	var found []string
	for _, pid := range proc.Pids() {
		v, ok := proc.Env(pid, key)
		if !ok || !strings.HasPrefix(v+"\x00", want) || !proc.Live(pid) {
			continue
		}
		found = append(found, fmt.Sprintf("%d:%s", pid, strings.Join(proc.Cmdline(pid), " ")))
	}
	sort.Strings(found)
	return strings.Join(found, ", ")
}

// Ip runs iproute2's ip, inside netns ns if it is not "", and returns its
// output: the independent view tests check the kernel through.
func Ip(t testing.TB, ns string, args ...string) string {
	t.Helper()
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// LabSnapshot is Snapshot with what is inside every named namespace: its
// links (with their details, not their indexes: a link made again is the
// same link), addresses (not their lifetimes), routes, nftables rules and
// forwarding. Two labs with the same snapshot are the same to a user.
func LabSnapshot(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(indexes.ReplaceAllString(Snapshot(t), ""))
	entries, _ := os.ReadDir(NetnsDir)
	for _, e := range entries {
		ns := e.Name()
		fmt.Fprintf(&b, "netns %s:\n", ns)
		fmt.Fprintf(&b, "links: %s\n", sortLines(indexes.ReplaceAllString(StripTimers(Ip(t, ns, "-d", "-o", "link")), "")))
		fmt.Fprintf(&b, "addrs: %s\n", sortLines(lifetimes.ReplaceAllString(indexes.ReplaceAllString(Ip(t, ns, "-o", "addr"), ""), "")))
		fmt.Fprintf(&b, "routes: %s\n", sortLines(notLocal(Ip(t, ns, "route", "show", "table", "all")+Ip(t, ns, "-6", "route", "show", "table", "all"))))
		fmt.Fprintf(&b, "rules: %s\n", Ip(t, ns, "rule")+Ip(t, ns, "-6", "rule"))
		if out, err := exec.Command("tc", "-n", ns, "qdisc", "show").Output(); err == nil {
			fmt.Fprintf(&b, "qdiscs: %s\n", sortLines(qdiscHandles.ReplaceAllString(string(out), "$1 ")))
		}
		if out, err := exec.Command("bridge", "-n", ns, "fdb", "show").Output(); err == nil {
			fmt.Fprintf(&b, "fdb: %s\n", staticFDB(string(out)))
		}
		if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").Output(); err == nil {
			fmt.Fprintf(&b, "nftables: %s\n", out)
		}
		for _, key := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding", "ipv6/conf/all/disable_ipv6"} {
			out, _ := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/sys/net/"+key).Output()
			fmt.Fprintf(&b, "%s=%s", key, out)
		}
	}
	return b.String()
}

// notLocal drops the routes of the local table, which the kernel keeps for
// the addresses of the moment (an IPv6 link-local one comes late).
func notLocal(routes string) string {
	var keep []string
	for _, line := range strings.Split(routes, "\n") {
		if !strings.Contains(line, " table local ") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// staticFDB keeps the entries of a forwarding database that someone put
// there (permanent, static), sorted: learned ones come and go with traffic.
func staticFDB(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "permanent") || strings.Contains(line, "static") {
			keep = append(keep, line)
		}
	}
	sort.Strings(keep)
	return strings.Join(keep, "\n")
}

// sortLines sorts the lines of s: the kernel lists links, addresses and
// routes in the order they were made, and a link made again is listed last.
func sortLines(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

var (
	// indexes are what tells a link made again from the one it replaces:
	// its index, its peer's, the ids of the namespaces it sees, its number
	// as a bridge's port.
	indexes = regexp.MustCompile(`(?m)^\d+: |@if\d+|link-netnsid \d+ ?|\bif\d+\b|(port_id|port_no) 0x[0-9a-f]+ |designated_port \d+ `)
	// lifetimes tick by themselves (a DHCP lease's address), and an IPv6
	// address is tentative for a moment.
	// qdiscHandles are the kernel's numbering of the default qdiscs it
	// attaches (noqueue has none, mq's children do).
	qdiscHandles = regexp.MustCompile(`\b[0-9a-f]+: (dev|parent) `)
	lifetimes    = regexp.MustCompile(`(valid|preferred)_lft \S+ ?|tentative `)
)
