package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nsrun/nsrun/runtime/journal"
)

// plan runs `nsrun plan` in-process; it touches nothing, so needs no root.
func plan(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := doMain(append([]string{"plan"}, args...), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name, src string
		args      []string
		code      int
		want      []string // lines of stdout, in order
		stderr    string   // in stderr
	}{
		{
			name: "blue",
			src:  "blue = netns(\"blue\", lo = False)\na, b = veth(\"v0\", \"v1\", mac = \"02:00:00:00:00:01\", peer_mac = \"02:00:00:00:00:02\", peer_netns = blue)\nb.addr(\"10.0.0.2/24\").up()\n",
			want: []string{
				"ip netns add blue",
				"ip link add v0 address 02:00:00:00:00:01 type veth peer name v1 address 02:00:00:00:00:02 netns blue",
				"ip -n blue addr add 10.0.0.2/24 dev v1 brd +",
				"ip -n blue link set v1 up",
			},
		},
		{
			name: "exec_in is a comment",
			src:  "n = netns(\"n\", lo = False)\nexec_in(n, [\"ip\", \"-br\", \"addr\"])\nn.sysctl(\"net.ipv4.ip_forward\", \"1\")\n",
			want: []string{"ip netns add n", "# ip netns exec n ip -br addr", "ip netns exec n sysctl -qw net.ipv4.ip_forward=1"},
		},
		{
			name: "argv",
			src:  "netns(argv[0], lo = False)\n",
			args: []string{"x1"},
			want: []string{"ip netns add x1"},
		},
		{
			name:   "error",
			src:    "netns(\"a\", lo = False)\nveth(\"a\", \"averyveryverylongname\")\n",
			code:   2,
			stderr: "error.star:2:5: in <toplevel>",
		},
		{
			name:   "syntax",
			src:    "netns(\"a\"\n",
			code:   2,
			stderr: "syntax.star:2:1",
		},
		{
			name:   "ends at a made-up answer",
			src:    "n = netns(\"n\", lo = False)\nif not exec_in(n, [\"false\"]).ok:\n    fail(\"no\")\nnetns(\"m\")\n",
			want:   []string{"ip netns add n", "# ip netns exec n false"},
			stderr: "the plan ends here, partial",
			code:   4,
		},
		{
			name: "assumes a check passes",
			src:  "n = netns(\"n\", lo = False)\nif exec_in(n, [\"false\"], check = False).rc != 1:\n    fail(\"no\")\nnetns(\"m\")\n",
			want: []string{"ip netns add n", "# ip netns exec n false", "# assumed at assumes.star:3:9: the check passes (a live run checks what the plan made up: no)", "ip netns add m; ip -n m link set lo up"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, strings.Fields(tt.name)[0]+".star")
			if err := os.WriteFile(path, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Chdir(dir)
			r := plan(t, append([]string{filepath.Base(path)}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Fatalf("exit %d (want %d), stderr:\n%s", r.code, tt.code, r.stderr)
			}
			if tt.want != nil {
				if got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("plan:\n%s\nwant:\n%s", r.stdout, strings.Join(tt.want, "\n"))
				}
			}
			if again := plan(t, append([]string{filepath.Base(path)}, tt.args...)...); again != r {
				t.Errorf("a second plan differs:\n%s\nfirst:\n%s", again.stdout, r.stdout)
			}
		})
	}
}

// --json has one entry per line of the plan, each with its step's op and
// the recipe's position.
func TestPlanJSON(t *testing.T) {
	text := plan(t, "../../recipes/openvnet.star")
	r := plan(t, "--json", "../../recipes/openvnet.star")
	if r.code != 0 || text.code != 0 {
		t.Fatalf("exit %d / %d: %s", r.code, text.code, r.stderr)
	}
	var entries []planEntry
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(text.stdout, "\n"), "\n")
	if len(entries) != len(lines) {
		t.Fatalf("%d entries for %d lines", len(entries), len(lines))
	}
	for i, e := range entries {
		if e.Cmd != lines[i] || e.Op == "" || !strings.Contains(e.Pos, ".star:") {
			t.Errorf("entry %d: %+v (line %q)", i, e, lines[i])
		}
	}
	if entries[0].Op != "netns" || entries[0].Pos != "../../recipes/openvnet.star:19:13" {
		t.Errorf("first entry: %+v", entries[0])
	}
	if again := plan(t, "--json", "../../recipes/openvnet.star"); again != r {
		t.Error("a second --json plan differs")
	}
}

// A step whose change logs nothing, and a command that is no step, leave
// the pairing of the others intact.
func TestPlanEntries(t *testing.T) {
	steps := []journal.Step{
		{Op: "netns", Name: "a", Pos: "r.star:1:1"},
		{Op: "sysctl", NS: "a", Name: "k.x", Pos: "r.star:2:1"}, // logs nothing
		{Op: "up", NS: "a", Name: "lo", Pos: "r.star:3:1"},
		{Op: "proc", NS: "a", Name: "sleep", Pos: "r.star:4:1"},
	}
	log := []string{"ip netns add a", "# ip netns exec a ip addr", "ip -n a link set lo up", "# ip netns exec a sleep 9"}
	got := planEntries(log, steps)
	want := []planEntry{
		{Op: "netns", Cmd: "ip netns add a", Pos: "r.star:1:1"},
		{Op: "exec", Cmd: "# ip netns exec a ip addr", ns: "a"},
		{Op: "sysctl", Pos: "r.star:2:1", ns: "a"},
		{Op: "up", Cmd: "ip -n a link set lo up", Pos: "r.star:3:1", ns: "a"},
		{Op: "proc", Cmd: "# ip netns exec a sleep 9", Pos: "r.star:4:1", ns: "a"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// Help is complete: the command, its flags and the JSON shape.
func TestPlanHelp(t *testing.T) {
	for _, args := range [][]string{{"help", "plan"}, {"plan", "--help"}} {
		var out, errb bytes.Buffer
		if code := doMain(args, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, want := range []string{"Usage: nsrun plan", "--json", "-L, --lib", `"op"`, "Exit codes"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v lacks %q:\n%s", args, want, out.String())
			}
		}
	}
}

// As nobody, from copies only nobody's permissions reach, the binary plans
// recipes/openvnet.star, the same each time and as root does.
func TestPlanUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to nobody")
	}
	dir := publicDir(t)
	bin := filepath.Join(dir, "nsrun")
	copyFile(t, nsrunBin, bin, 0o755)
	copyFile(t, "../../recipes/openvnet.star", filepath.Join(dir, "openvnet.star"), 0o644)
	runAs := func(uid uint32) string {
		t.Helper()
		var out, errb bytes.Buffer
		cmd := exec.Command(bin, "plan", "openvnet.star")
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &errb
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		if err := cmd.Run(); err != nil {
			t.Fatalf("uid %d: %v: %s", uid, err, errb.String())
		}
		return out.String()
	}
	first, second, root := runAs(65534), runAs(65534), runAs(0)
	if first == "" || first != second || first != root {
		t.Errorf("plans differ:\n%s\n---\n%s\n--- as root:\n%s", first, second, root)
	}
	if !strings.HasPrefix(first, "ip netns add vnet; ip -n vnet link set lo up\n") {
		t.Errorf("plan starts:\n%.200s", first)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}

// publicDir makes a directory that every user may read and enter (a
// t.TempDir's parent is private to its owner), removed at the end.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nsrun-plan")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Every shipped recipe plans, and draws, to its end: the checks the plan
// cannot make are assumed to pass, and say so.
func TestEveryRecipePlansToTheEnd(t *testing.T) {
	recipes, _ := filepath.Glob("../../recipes/*.star")
	for _, r := range recipes {
		if p := plan(t, r); p.code != 0 {
			t.Errorf("plan %s: exit %d: %s", r, p.code, p.stderr)
		}
		if g := graphCmd(t, r); g.code != 0 || strings.Contains(g.stdout, "partial") {
			t.Errorf("graph %s: exit %d: %s", r, g.code, g.stderr)
		}
	}
}

// A lab across machines is planned whole and printed split per machine,
// each line of JSON with its machine; --machine prints one part, which
// alone --format sh takes; graph groups each machine's nodes and draws a
// veth across machines as one edge with its VNI. No machine is reached.
func TestPlanAcrossMachines(t *testing.T) {
	src := strings.ReplaceAll(acrossRecipe, "CONFIG", `"ssh_config"`)
	src = strings.ReplaceAll(src, `print(exec_in(hosts[-1], "ip -br addr show eth0").stdout.split()[2])`, "") // a made-up answer ends a plan
	recipe := write(t, "across.star", src)
	r := plan(t, recipe)
	if r.code != 0 {
		t.Fatalf("plan: %d\n%s", r.code, r.stderr)
	}
	var sections []string
	part := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if m, ok := strings.CutPrefix(l, "# machine "); ok {
			m, _, _ = strings.Cut(m, " ")
			sections = append(sections, m)
			continue
		}
		if len(sections) > 0 {
			part[sections[len(sections)-1]] += l + "\n"
		}
	}
	if strings.Join(sections, " ") != "local m1 m2 m3" {
		t.Fatalf("sections %v, want local m1 m2 m3:\n%s", sections, r.stdout)
	}
	for m, want := range map[string][]string{
		"m1": {"ip netns add r;", "ip link add eth-a ", " netns r type vxlan id "},
		"m2": {"ip netns add swa;", "ip netns add a1;", "ip -n swa link set v-a1-eth0 master bra"},
		"m3": {"ip link add brb ", "ip netns add b20;", "ip netns add a11;"},
	} {
		for _, w := range want {
			if !strings.Contains(part[m], w) {
				t.Errorf("machine %s's part has no %q:\n%s", m, w, part[m])
			}
		}
	}
	for _, other := range []string{"ip netns add r;", "ip netns add a1;", "ip netns add b1;"} {
		if n := strings.Count(r.stdout, other); n != 1 {
			t.Errorf("%q is in %d parts", other, n)
		}
	}
	sh := plan(t, "--machine", "m3", "--format", "sh", recipe)
	if sh.code != 0 || !strings.HasPrefix(sh.stdout, "#!/bin/sh") || !strings.Contains(sh.stdout, "ip netns add b1;") || strings.Contains(sh.stdout, "ip netns add r;") {
		t.Errorf("plan --machine m3 --format sh: %d\n%s%s", sh.code, sh.stdout, sh.stderr)
	}
	if r := plan(t, "--format", "sh", recipe); r.code != 2 || !strings.Contains(r.stderr, "--machine") {
		t.Errorf("plan --format sh of a lab across machines: %d %s", r.code, r.stderr)
	}
	if r := plan(t, "--machine", "m9", recipe); r.code != 2 || !strings.Contains(r.stderr, `no such machine`) {
		t.Errorf("plan --machine m9: %d %s", r.code, r.stderr)
	}
	if r := plan(t, "--machine", "m1", write(t, "one.star", `netns("a")`+"\n")); r.code != 2 || !strings.Contains(r.stderr, `declares no machines`) {
		t.Errorf("plan --machine of a lab on one machine: %d %s", r.code, r.stderr)
	}
	// What a part cannot place is refused while planning.
	for src, want := range map[string]string{
		`spawn_in(m2.host(), "sleep 9")`:                        `m2.host() is machine "m2"'s own namespace`,
		`spawn_in(netns("b", on = m2), "sleep 9", ready = len)`: `not a function: call wait_until() after spawn_in`,
		`machine("m3", ssh = "m3", nsrun = " ")`:                `for parameter nsrun: " " names no command`,
	} {
		r := plan(t, write(t, "bad.star", "m2 = machine(\"m2\", ssh = \"m2\")\n"+src+"\n"))
		if r.code != 2 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "bad.star:2:") {
			t.Errorf("%s: %d %s", src, r.code, r.stderr)
		}
	}
	// Each machine's own namespace is a node of its own, in its group.
	hosts := write(t, "hosts.star", `m2 = machine("m2", ssh = "m2")
veth("va", "ha", netns = netns("a"), peer_netns = host())
veth("vb", "hb", netns = netns("b", on = m2), peer_netns = m2.host())
`)
	if g := graphCmd(t, hosts); g.code != 0 || !strings.Contains(g.stdout, "  subgraph machine_local [\"machine local\"]\n    host__local[\"host\"]\n") ||
		!strings.Contains(g.stdout, "  subgraph machine_m2 [\"machine m2\"]\n    host__m2[\"host\"]\n") || strings.Contains(g.stdout, "machine_ ") {
		t.Errorf("graph of two machines' own namespaces:\n%s", g.stdout)
	} else {
		checkMermaid(t, g.stdout)
	}
	var entries []planEntry
	if err := json.Unmarshal([]byte(plan(t, "--json", recipe).stdout), &entries); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.On == "" {
			t.Errorf("a line of no machine: %+v", e)
		}
		if strings.HasPrefix(e.Cmd, "ip netns add b") && e.On != "m3" {
			t.Errorf("%q on %s, want m3", e.Cmd, e.On)
		}
	}
	g := graphCmd(t, recipe)
	if g.code != 0 {
		t.Fatalf("graph: %d %s", g.code, g.stderr)
	}
	checkMermaid(t, g.stdout)
	for _, w := range []string{`subgraph machine_m3 ["machine m3"]`, `    ns_b20("b20")`, `    br__m3__brb{{"brb"}}`, `ns_r ---|"vxlan `} {
		if !strings.Contains(g.stdout, w) {
			t.Errorf("graph has no %q:\n%s", w, g.stdout)
		}
	}
	if d := graphCmd(t, "--format", "dot", recipe); d.code != 0 || !strings.Contains(d.stdout, "subgraph cluster_machine_m2 {") {
		t.Errorf("graph --format dot: %d\n%s", d.code, d.stdout)
	} else {
		checkDOT(t, d.stdout)
	}
}
