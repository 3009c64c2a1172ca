package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/view"
)

// upLab runs a small recipe as lab name, without --rm, and downs the lab at
// the end of the test: namespaces P1 and P2 joined by a veth, a veth from
// the host into P1, addresses, routes, a neighbour (after a ping) and a
// background process.
func upLab(t *testing.T, name, p string) {
	t.Helper()
	src := fmt.Sprintf(`n1 = netns("%[1]s1")
n2 = netns("%[1]s2")
a, b = veth("%[1]s-a", "%[1]s-b", netns = n1, peer_netns = n2)
a.addr("10.77.0.1/24").up()
b.addr("10.77.0.2/24", "fd00:77::2/64").up()
n1.route("10.78.0.0/16", via = "10.77.0.2")
n2.route("default", via = "10.77.0.1")
h, hp = veth("%[1]s-h", "%[1]s-hp", peer_netns = n1)
h.addr("10.79.0.1/24").up()
hp.addr("10.79.0.2/24").up()
spawn_in(n1, ["sleep", "300"])
reach(n1, "10.77.0.2")
`, p)
	r := nsrun(t, write(t, name+".star", src))
	if r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	t.Cleanup(func() {
		if r := nsrun(t, "down", name); r.code != 0 {
			t.Errorf("down: %+v", r)
		}
	})
}

func TestInspect(t *testing.T) {
	nstest.Kernel(t)
	upLab(t, "insp", "in")
	r := nsrun(t, "inspect", "insp")
	if r.code != 0 {
		t.Fatalf("inspect: %+v", r)
	}
	for _, want := range []string{
		`lab "insp" (up, id `,
		"\nnetns host\n", "\nnetns in1\n", "\nnetns in2\n",
		"in-a", "10.77.0.1/24", "in-b", "10.77.0.2/24 fd00:77::2/64", "in-h", "10.79.0.1/24",
		"10.78.0.0/16 via 10.77.0.2 dev in-a proto nsrun",
		"default via 10.77.0.1 dev in-b proto nsrun",
		"10.77.0.2", // ns1's neighbour, after the ping
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, r.stdout)
		}
	}
	if !regexp.MustCompile(`\n  [0-9]+ +in1 +sleep +sleep 300\n`).MatchString(r.stdout) {
		t.Errorf("inspect lacks the process:\n%s", r.stdout)
	}
	host := r.stdout[strings.Index(r.stdout, "netns host"):strings.Index(r.stdout, "netns in1")]
	if strings.Contains(host, " lo ") || strings.Contains(host, "in-hp") {
		t.Errorf("host shows links that are not the lab's:\n%s", host)
	}
	// A lab whose only link in the host is a veth's peer end shows it.
	if r := nsrun(t, "--name", "insp-peer", write(t, "peer.star", `veth("ip-z1", "ip-z2", netns = netns("ipz"), peer_netns = host())`+"\n")); r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	if r := nsrun(t, "inspect", "insp-peer"); r.code != 0 || !regexp.MustCompile(`netns host\n  links:\n +ip-z2 `).MatchString(r.stdout) {
		t.Errorf("inspect of a lab with a veth's peer in the host: %+v", r)
	}
	if r := nsrun(t, "down", "insp-peer"); r.code != 0 {
		t.Errorf("down: %+v", r)
	}

	r = nsrun(t, "inspect", "--json", "insp")
	var v view.LabView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 {
		t.Fatalf("inspect --json: %v: %+v", err, r)
	}
	var names []string
	for _, ns := range v.Namespaces {
		names = append(names, ns.Name)
	}
	if !slices.Equal(names, []string{"host", "in1", "in2"}) {
		t.Errorf("namespaces %v", names)
	}
	if l := v.Namespaces[0].Links; len(l) != 1 || l[0].Name != "in-h" || l[0].Kind != "veth" || !l[0].Up ||
		l[0].Tag != "nsrun:insp" || !slices.Contains(l[0].Addrs, "10.79.0.1/24") {
		t.Errorf("host links %+v", l)
	}
	in1 := v.Namespaces[1]
	if i := slices.IndexFunc(in1.Links, func(l view.LinkView) bool { return l.Name == "in-hp" }); i < 0 || in1.Links[i].Addrs[0] != "10.79.0.2/24" {
		t.Errorf("in1 links %+v", in1.Links)
	}
	if !slices.ContainsFunc(in1.Neighbors, func(n view.NeighView) bool { return n.IP == "10.77.0.2" && n.Dev == "in-a" }) {
		t.Errorf("in1 neighbours %+v", in1.Neighbors)
	}
	if p := v.Processes; len(p) != 1 || p[0].Netns != "in1" || p[0].Name != "sleep" || p[0].Command != "sleep 300" {
		t.Errorf("processes %+v", p)
	}
	if r := nsrun(t, "inspect", "nope"); r.code != 2 || !strings.Contains(r.stderr, `no lab "nope"`) {
		t.Errorf("inspect of no lab: %+v", r)
	}
}

// Issue 5, item 4: an address removed by hand with ip addr del is reported;
// so are a deleted link (both ends of a veth) and a process that died.
func TestCheck(t *testing.T) {
	nstest.Kernel(t)
	upLab(t, "chk", "ck")
	if r := nsrun(t, "check", "chk"); r.code != 0 || !strings.Contains(r.stdout, `lab "chk" is as it recorded (checked 2 namespaces, 4 links, 5 addresses, 2 routes, 1 process)`) {
		t.Fatalf("check of an untouched lab: %+v", r)
	}
	nstest.Ip(t, "ck1", "addr", "del", "10.77.0.1/24", "dev", "ck-a")
	r := nsrun(t, "check", "chk")
	if r.code != 1 || !strings.Contains(r.stdout, `address 10.77.0.1/24 on "ck-a" in netns "ck1": missing`+"\n") {
		t.Fatalf("check after ip addr del: %+v", r)
	}
	nstest.Ip(t, "ck2", "link", "set", "ck-b", "down")
	if r := nsrun(t, "check", "chk"); r.code != 1 || !strings.Contains(r.stdout, `link "ck-b" in netns "ck2": is down (the lab set it up)`+"\n") {
		t.Errorf("check after ip link set down: %+v", r)
	}
	nstest.Ip(t, "ck2", "link", "set", "ck-b", "up")

	nstest.Ip(t, "", "link", "del", "ck-h")
	var pid int
	for _, p := range inspectJSON(t, "chk").Processes {
		pid = p.Pid
	}
	if pid == 0 {
		t.Fatal("no process to kill")
	}
	syscallKill(t, pid)
	r = nsrun(t, "check", "chk")
	for _, want := range []string{
		`address 10.77.0.1/24 on "ck-a" in netns "ck1": missing`,
		`veth "ck-h": missing`,
		`veth "ck-hp" in netns "ck1": missing`,
		fmt.Sprintf(`process %d (sleep) in netns "ck1": not running`, pid),
	} {
		if r.code != 1 || !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("check lacks %q: %+v", want, r)
		}
	}
	if strings.Contains(r.stdout, "10.79.0.1/24") {
		t.Errorf("addresses of a missing link are reported too:\n%s", r.stdout)
	}
}

func inspectJSON(t *testing.T, lab string) view.LabView {
	t.Helper()
	var v view.LabView
	r := nsrun(t, "inspect", "--json", lab)
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("inspect --json %s: %v: %+v", lab, err, r)
	}
	return v
}

// syscallKill ends pid and waits until it is gone (it is not our child:
// its parent, the helper, reaps it).
func syscallKill(t *testing.T, pid int) {
	t.Helper()
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Kill()
	}
	if err != nil {
		t.Fatal(err)
	}
	for proc.Live(pid) {
		time.Sleep(5 * time.Millisecond)
	}
}
