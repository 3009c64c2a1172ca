package recipes_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/sandbox"
)

// The plan as a script builds what a run builds: for every recipe, the
// benchmark's star and a recipe of every kind of change, `nsrun plan --format sh` run in one fresh sandbox and
// `nsrun run` in another leave the same kernel state, read in each by
// iproute2 (ip -d -j), nft -j and sysctl: the namespaces, links (kind, MAC,
// MTU, master, admin state, carrier and operational state, a macvlan's
// mode, a port's hairpin), addresses, routes, NAT and the sysctls the recipe sets. What
// the recipe's processes make (a daemon's routes, a DHCP lease's address
// and route) is not in the script, and left out of both.
func TestPlanScriptBuildsTheRunsLab(t *testing.T) {
	if !sandbox.Inside() {
		t.Skip("needs root (real-kernel test; runs inside a sandbox)")
	}
	paths, _ := filepath.Glob("*.star")
	type recipe struct{ name, path string }
	var all []recipe
	for _, p := range paths {
		all = append(all, recipe{strings.TrimSuffix(p, ".star"), p})
	}
	all = append(all, recipe{"bench_star", "../bench/star.star"},
		recipe{"every_change", "../cmd/nsrun/testdata/every_change.star"}) // one of every kind of change
	for _, r := range all {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			args := []string{r.path}
			if r.name == "bench_star" {
				args = append(args, "6")
			}
			code, script, stderr := nstest.Run(t, exec.Command(nsrunBin, append([]string{"plan", "--format", "sh"}, args...)...))
			if code != 0 {
				t.Fatalf("plan --format sh: exit %d\n%s", code, stderr)
			}
			keys := scriptSysctls(script)
			file := filepath.Join(t.TempDir(), "lab.sh")
			if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			var byScript, byRun labState
			var wg sync.WaitGroup
			wg.Go(func() {
				byScript = inFreshSandbox(t, "sh -e "+file, "for n in $(ls /run/netns); do ip netns del $n; done", keys)
			})
			wg.Go(func() {
				lab := quote(strings.TrimSuffix(filepath.Base(r.path), ".star"))
				run := quote(nsrunBin) + " -q " + strings.Join(quoteAll(args), " ")
				byRun = inFreshSandbox(t, run, quote(nsrunBin)+" down "+lab, keys)
			})
			wg.Wait()
			if t.Failed() {
				return
			}
			byScript.omit(byRun.dynamic)
			byRun.omit(byRun.dynamic)
			if diff := cmp.Diff(byRun.ns, byScript.ns); diff != "" {
				t.Errorf("the plan's script builds another lab than the run (-run +script):\n%s\nscript:\n%s", diff, script)
			}
		})
	}
}

var nsrunBin string

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = quote(s)
	}
	return out
}

// scriptSysctls are the sysctls a script sets, and those every namespace
// is read for.
func scriptSysctls(script string) []string {
	keys := []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.all.disable_ipv6",
		"net.ipv6.conf.default.disable_ipv6", "net.ipv4.icmp_echo_ignore_all"}
	for _, m := range regexp.MustCompile(`sysctl -qw ([^ ;=']+)=`).FindAllStringSubmatch(script, -1) {
		keys = append(keys, m[1])
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// dumpScript prints, for the host namespace and each named one, what
// labState reads.
const dumpScript = `
# The kernel turns a link with a carrier operational a moment later.
for i in $(seq 100); do
	busy=
	for ns in "" $(ls /run/netns); do
		if [ -z "$ns" ]; then n=""; else n="-n $ns"; fi
		! ip $n -o link show | grep -q 'LOWER_UP.* state DOWN' || busy=1
	done
	[ -n "$busy" ] || break
	sleep 0.05
done
for ns in "" $(ls /run/netns); do
	if [ -z "$ns" ]; then n=""; x=""; else n="-n $ns"; x="ip netns exec $ns"; fi
	echo "@@ns $ns"
	echo "@@link"; ip $n -d -j link show
	echo "@@addr"; ip $n -j addr show
	echo "@@route4"; ip $n -j -4 route show table all
	echo "@@route6"; ip $n -j -6 route show table all
	echo "@@nft"; $x nft -j list ruleset
	echo "@@sysctl"; for k in $KEYS; do printf '%s=%s\n' "$k" "$($x sysctl -n "$k" 2>/dev/null || echo none)"; done
done
`

// inFreshSandbox builds a lab with build in a network and mount namespace
// of its own (with its own /run/netns, /run/nsrun and /sys), reads its
// state, then runs teardown; t fails if anything is left running in it.
func inFreshSandbox(t *testing.T, build, teardown string, keys []string) labState {
	t.Helper()
	script := `set -e
mount -n -t tmpfs -o mode=0755 tmpfs /run/netns
mount -n -t tmpfs -o mode=0755 tmpfs /run/nsrun
mount -n -t sysfs sysfs /sys
ip link set lo up
readlink /proc/self/ns/net >&3; exec 3>&-
` + build + " >&2\n" + dumpScript + teardown + " >&2\n" + `[ -z "$(ls /run/netns)" ] || { echo "left: $(ls /run/netns)" >&2; exit 1; }`
	cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "KEYS="+strings.Join(keys, " "))
	r, w, err := os.Pipe()
	if err != nil {
		t.Error(err)
		return labState{}
	}
	cmd.ExtraFiles = []*os.File{w}
	code, stdout, stderr := nstest.Run(t, cmd)
	w.Close()
	netnsID := make([]byte, 64)
	n, _ := r.Read(netnsID)
	r.Close()
	if left := inNetns(strings.TrimSpace(string(netnsID[:n]))); len(left) > 0 {
		t.Errorf("%s left processes in its sandbox: %v", build, left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if code != 0 {
		t.Errorf("%s in a fresh sandbox: exit %d\n%s", build, code, stderr)
		return labState{}
	}
	return readLabState(t, stdout)
}

// inNetns returns the processes in the network namespace netns ("net:[ino]").
func inNetns(netns string) []int {
	var out []int
	if netns == "" {
		return nil
	}
	for _, pid := range proc.Pids() {
		if fmt.Sprintf("net:[%d]", proc.Netns(pid)) == netns {
			out = append(out, pid)
		}
	}
	return out
}

// labState is a lab's kernel state, by namespace ("" the sandbox's own),
// reduced to what a lab is made of; dynamic holds the addresses with a
// lifetime (a DHCP lease's), by namespace.
type labState struct {
	ns      map[string]*nsState
	dynamic map[string][]string
}

type nsState struct {
	Links   []linkState
	Addrs   []string
	Routes  []string
	NFT     []string
	Sysctls []string
}

type linkState struct {
	Name, Kind, MAC, Master, Oper, Mode string
	MTU                                 int
	Up, Carrier, Hairpin                bool
}

func readLabState(t *testing.T, out string) labState {
	t.Helper()
	st := labState{ns: map[string]*nsState{}, dynamic: map[string][]string{}}
	var cur *nsState
	var ns, section string
	var body strings.Builder
	flush := func() {
		if cur != nil && section != "" {
			if err := cur.read(section, body.String(), ns, st.dynamic); err != nil {
				t.Errorf("netns %q, %s: %v\n%s", ns, section, err, body.String())
			}
		}
		body.Reset()
	}
	for _, line := range strings.SplitAfter(out, "\n") {
		switch {
		case strings.HasPrefix(line, "@@ns"):
			flush()
			ns, section = strings.TrimSpace(strings.TrimPrefix(line, "@@ns")), ""
			cur = &nsState{}
			st.ns[ns] = cur
		case strings.HasPrefix(line, "@@"):
			flush()
			section = strings.TrimSpace(strings.TrimPrefix(line, "@@"))
		default:
			body.WriteString(line)
		}
	}
	flush()
	return st
}

func (s *nsState) read(section, body, ns string, dynamic map[string][]string) error {
	switch section {
	case "link":
		var links []struct {
			Name     string   `json:"ifname"`
			Flags    []string `json:"flags"`
			MTU      int      `json:"mtu"`
			Oper     string   `json:"operstate"`
			Master   string   `json:"master"`
			Type     string   `json:"link_type"`
			Address  string   `json:"address"`
			LinkInfo struct {
				Kind      string                 `json:"info_kind"`
				Data      struct{ Mode string }  `json:"info_data"`
				SlaveData struct{ Hairpin bool } `json:"info_slave_data"`
			} `json:"linkinfo"`
		}
		if err := json.Unmarshal([]byte(body), &links); err != nil {
			return err
		}
		for _, l := range links {
			kind := l.LinkInfo.Kind
			if kind == "" {
				kind = l.Type
			}
			carrier := slices.Contains(l.Flags, "LOWER_UP")
			oper := l.Oper
			if !carrier {
				// Without a carrier, the state the kernel reports comes
				// later, and from the order of events: UNKNOWN, DOWN,
				// LOWERLAYERDOWN are one state here.
				oper = "no carrier"
			} else if oper == "UNKNOWN" {
				// With one, the kernel's link watch says UP within a
				// second (lo never does): the same state, seen sooner.
				oper = "UP"
			}
			s.Links = append(s.Links, linkState{Name: l.Name, Kind: kind, MAC: l.Address, Master: l.Master, Oper: oper,
				Mode: l.LinkInfo.Data.Mode, MTU: l.MTU, Up: slices.Contains(l.Flags, "UP"), Carrier: carrier, Hairpin: l.LinkInfo.SlaveData.Hairpin})
		}
		slices.SortFunc(s.Links, func(a, b linkState) int { return strings.Compare(a.Name, b.Name) })
	case "addr":
		var links []struct {
			Name  string `json:"ifname"`
			Addrs []struct {
				Family    string `json:"family"`
				Local     string `json:"local"`
				Prefix    int    `json:"prefixlen"`
				Broadcast string `json:"broadcast"`
				Scope     string `json:"scope"`
				Valid     uint64 `json:"valid_life_time"`
			} `json:"addr_info"`
		}
		if err := json.Unmarshal([]byte(body), &links); err != nil {
			return err
		}
		for _, l := range links {
			for _, a := range l.Addrs {
				if a.Valid != 4294967295 {
					dynamic[ns] = append(dynamic[ns], a.Local)
				}
				s.Addrs = append(s.Addrs, fmt.Sprintf("%s %s/%d brd %s scope %s dev %s", a.Family, a.Local, a.Prefix, a.Broadcast, a.Scope, l.Name))
			}
		}
		slices.Sort(s.Addrs)
	case "route4", "route6":
		var routes []map[string]any
		if err := json.Unmarshal([]byte(body), &routes); err != nil {
			return err
		}
		for _, r := range routes {
			switch r["protocol"] {
			case "kernel", "boot", "static", "78", nil:
			default:
				continue // a daemon's, a lease's: not the script's
			}
			if dst, _ := r["dst"].(string); r["table"] == "local" && strings.HasPrefix(dst, "fe80:") {
				continue // a link-local address's, made once its DAD is done: the moment's
			}
			delete(r, "flags") // linkdown and the like: the moment's
			b, _ := json.Marshal(r)
			s.Routes = append(s.Routes, string(b))
		}
		slices.Sort(s.Routes)
	case "nft":
		var rs struct{ Nftables []map[string]any }
		if err := json.Unmarshal([]byte(body), &rs); err != nil {
			return err
		}
		for _, o := range rs.Nftables {
			if _, ok := o["metainfo"]; ok {
				continue
			}
			dropHandles(o)
			b, _ := json.Marshal(o)
			s.NFT = append(s.NFT, string(b))
		}
	case "sysctl":
		s.Sysctls = strings.Split(strings.TrimSpace(body), "\n")
	}
	return nil
}

// dropHandles removes the handles nft numbers objects with, which depend on
// the order they were made in.
func dropHandles(v any) {
	switch v := v.(type) {
	case map[string]any:
		delete(v, "handle")
		for _, x := range v {
			dropHandles(x)
		}
	case []any:
		for _, x := range v {
			dropHandles(x)
		}
	}
}

// omit leaves out of st the addresses in dynamic, by namespace, and the
// routes the kernel made for them.
func (st labState) omit(dynamic map[string][]string) {
	for ns, addrs := range dynamic {
		s := st.ns[ns]
		if s == nil {
			continue
		}
		s.Addrs = slices.DeleteFunc(s.Addrs, func(a string) bool {
			f := strings.Fields(a)
			return slices.Contains(addrs, strings.Split(f[1], "/")[0])
		})
		s.Routes = slices.DeleteFunc(s.Routes, func(r string) bool {
			var m map[string]any
			json.Unmarshal([]byte(r), &m)
			src, _ := m["prefsrc"].(string)
			dst, _ := m["dst"].(string)
			return slices.Contains(addrs, src) || slices.Contains(addrs, dst)
		})
	}
}
