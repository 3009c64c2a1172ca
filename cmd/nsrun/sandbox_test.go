package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// asNobody runs the binary as nobody from a directory only nobody's
// permissions reach, with env and in a mount namespace of its own where
// /run is empty (as on a machine where nsrun never ran as root), and
// returns what it printed.
func asNobody(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	script := `mount -n --make-rprivate / && mount -n -t tmpfs tmpfs /run && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"`
	cmd := exec.Command("unshare", append([]string{"-m", "sh", "-c", script, "sh", filepath.Join(dir, "nsrun")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "TMPDIR=" + dir}, env...)
	return runCmd(t, cmd)
}

// Issue 5, item 5: without root, --sandbox runs a walkthrough through a
// user namespace; without --sandbox, the error says what is needed.
func TestSandboxUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to nobody")
	}
	nstest.Kernel(t)
	dir := publicDir(t)
	copyFile(t, nsrunBin, filepath.Join(dir, "nsrun"), 0o755)
	copyFile(t, "../../recipes/openvnet.star", filepath.Join(dir, "openvnet.star"), 0o644)

	r := asNobody(t, dir, nil, "--sandbox", "--rm", "openvnet.star")
	if r.code != 0 || !strings.Contains(r.stdout, "router: ns1 -> 172.16.2.3 ok") {
		t.Errorf("nsrun --sandbox --rm openvnet.star as nobody: %+v", r)
	}
	r = asNobody(t, dir, nil, "openvnet.star")
	if r.code != 2 || !strings.Contains(r.stderr, "needs root (CAP_NET_ADMIN); without it, --sandbox") {
		t.Errorf("without --sandbox as nobody: %+v", r)
	}
}

// A sandbox kept with --keep stays after the run, and exec, check and down
// reach the lab in it: as root, and as nobody.
func TestSandboxKept(t *testing.T) {
	nstest.Kernel(t)
	r := nsrun(t, "run", "--sandbox", "--keep", "--name", "kept", "../../recipes/netns_blue.star")
	if r.code != 0 {
		t.Fatalf("run --sandbox --keep: %+v", r)
	}
	t.Cleanup(func() { nsrun(t, "down", "kept") })
	if out, _ := exec.Command("ip", "netns").Output(); strings.Contains(string(out), "blue") {
		t.Errorf("the sandbox's namespaces show on the machine: %s", out)
	}
	if r := nsrun(t, "ls"); !strings.Contains(r.stdout, "WHERE") || !regexp.MustCompile(`kept +up .* sandbox \d+`).MatchString(r.stdout) {
		t.Errorf("ls: %+v", r)
	}
	if r := nsrun(t, "exec", "kept", "blue", "--", "ip", "-br", "addr", "show", "veth1"); r.code != 0 || !strings.Contains(r.stdout, "192.168.10.21/24") {
		t.Errorf("exec in the kept sandbox: %+v", r)
	}
	if r := nsrunStdin(t, "exit 5\n", nil, "exec", "kept", "blue", "sh"); r.code != 5 {
		t.Errorf("exec sh, exit 5 on stdin: %+v", r)
	}
	if r := nsrun(t, "check", "kept"); r.code != 0 {
		t.Errorf("check: %+v", r)
	}
	if r := nsrun(t, "run", "--keep", "../../recipes/netns_blue.star"); r.code != 2 || !strings.Contains(r.stderr, "--keep keeps a sandbox") {
		t.Errorf("--keep without --sandbox: %+v", r)
	}

	// A second sandbox with a lab of the same name: each is named by its
	// sandbox's id, as ID:LAB or with --sandbox-id.
	if r := nsrun(t, "run", "--sandbox", "--keep", "--name", "kept", "../../recipes/veth_container.star"); r.code != 0 {
		t.Fatalf("a second run --sandbox --keep --name kept: %+v", r)
	}
	var labs []struct{ Lab, Sandbox string }
	if r := nsrun(t, "ls", "--json"); json.Unmarshal([]byte(r.stdout), &labs) != nil || len(labs) != 2 || labs[0].Sandbox == labs[1].Sandbox {
		t.Fatalf("ls --json: %+v", r)
	}
	if r := nsrun(t, "exec", "kept", "blue", "--", "true"); r.code != 125 || !strings.Contains(r.stderr, `lab "kept" is in 2 kept sandboxes: name one of them (`) {
		t.Errorf("exec of a lab two sandboxes have: %+v", r)
	}
	for _, l := range labs {
		ns := map[bool]string{true: "blue", false: "lxchost"}[nsrun(t, "exec", l.Sandbox+":kept", "blue", "--", "true").code == 0]
		if r := nsrun(t, "exec", "--sandbox-id", l.Sandbox, "kept", ns, "--", "sh", "-c", "exit 2"); r.code != 2 {
			t.Errorf("exec --sandbox-id %s kept %s -- exit 2: %+v", l.Sandbox, ns, r)
		}
		if r := nsrun(t, "inspect", "--sandbox-id", l.Sandbox, "kept"); r.code != 0 || !strings.Contains(r.stdout, ns) {
			t.Errorf("inspect --sandbox-id %s kept: %+v", l.Sandbox, r)
		}
	}
	if r := nsrun(t, "down", labs[0].Sandbox+":kept", "--sandbox-id", labs[1].Sandbox, "kept"); r.code != 0 || strings.Count(r.stdout, `removed lab "kept"`) != 2 {
		t.Errorf("down ID:kept --sandbox-id ID kept: %+v", r)
	}
	waitNoHolders(t, "/run/nsrun/.sandbox")

	if os.Geteuid() != 0 {
		return
	}
	dir := publicDir(t)
	copyFile(t, nsrunBin, filepath.Join(dir, "nsrun"), 0o755)
	copyFile(t, "../../recipes/openvnet.star", filepath.Join(dir, "openvnet.star"), 0o644)
	run := dir + "/run"
	os.Mkdir(run, 0o700)
	os.Chown(run, 65534, 65534)
	env := []string{"XDG_RUNTIME_DIR=" + run}
	if r := asNobody(t, dir, env, "run", "--sandbox", "--keep", "openvnet.star"); r.code != 0 {
		t.Fatalf("as nobody, run --sandbox --keep: %+v", r)
	}
	t.Cleanup(func() { asNobody(t, dir, env, "down", "openvnet") })
	if r := asNobody(t, dir, env, "exec", "openvnet", "ns1", "--", "ip", "-br", "addr", "show", "ns-veth1"); r.code != 0 || !strings.Contains(r.stdout, "172.16.1.1/24") {
		t.Errorf("as nobody, exec in the kept sandbox: %+v", r)
	}
	if r := asNobody(t, dir, env, "down", "openvnet"); r.code != 0 {
		t.Errorf("as nobody, down: %+v", r)
	}
	waitNoHolders(t, filepath.Join(run, "nsrun-sandbox"))
}

// waitNoHolders waits for the holders of kept sandboxes to end, and checks
// they removed their sockets.
func waitNoHolders(t *testing.T, dir string) {
	t.Helper()
	for i := 0; ; i++ {
		_, err := os.Stat(dir)
		if os.IsNotExist(err) {
			return
		}
		if i == 100 {
			entries, _ := os.ReadDir(dir)
			t.Fatalf("%s is still there after the last lab went down: %v", dir, entries)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
