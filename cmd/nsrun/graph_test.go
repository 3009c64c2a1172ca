package main

import (
	"bytes"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/graph"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// graphCmd runs `nsrun graph` in-process.
func graphCmd(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := doMain(append([]string{"graph"}, args...), &out, &errb)
	return result{code, out.String(), errb.String()}
}

var (
	mermaidNode     = regexp.MustCompile(`^  (?:  )?([A-Za-z0-9_]+)(\(".*"\)|\[".*"\]|\{\{".*"\}\})$`)
	mermaidSubgraph = regexp.MustCompile(`^  subgraph ([A-Za-z0-9_]+) \[".*"\]$`)
	mermaidEdge     = regexp.MustCompile(`^  ([A-Za-z0-9_]+) (---\|".*"\||-\.-) ([A-Za-z0-9_]+)$`)
)

// checkMermaid checks a flowchart's structure, as far as that can be done
// without a renderer: the header, each node declared once before any edge,
// each edge between declared nodes, no edge twice.
func checkMermaid(t *testing.T, src string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(src, "\n"), "\n")
	if lines[0] != "flowchart LR" && lines[0] != "graph LR" {
		t.Fatalf("header %q", lines[0])
	}
	nodes, edges := map[string]bool{}, map[string]bool{}
	in := "" // the subgraph open
	for _, line := range lines[1:] {
		if m := mermaidSubgraph.FindStringSubmatch(line); m != nil {
			if in != "" || nodes[m[1]] || len(edges) > 0 {
				t.Errorf("subgraph %q nested, twice or after edges", m[1])
			}
			in, nodes[m[1]] = m[1], true
			continue
		}
		if line == "  end" {
			if in == "" {
				t.Errorf("end of no subgraph")
			}
			in = ""
			continue
		}
		if m := mermaidNode.FindStringSubmatch(line); m != nil {
			if (in != "") != strings.HasPrefix(line, "    ") {
				t.Errorf("node %q indented as in a subgraph or not: %q", m[1], line)
			}
			if nodes[m[1]] || len(edges) > 0 {
				t.Errorf("node %q declared twice, or after edges", m[1])
			}
			nodes[m[1]] = true
			continue
		}
		m := mermaidEdge.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("neither a node nor an edge: %q", line)
			continue
		}
		if !nodes[m[1]] || !nodes[m[3]] {
			t.Errorf("edge between undeclared nodes: %q", line)
		}
		if edges[line] {
			t.Errorf("edge twice: %q", line)
		}
		edges[line] = true
	}
	if len(nodes) == 0 {
		t.Error("no nodes")
	}
}

// checkDOT renders a DOT graph with Graphviz, if it is installed.
func checkDOT(t *testing.T, src string) {
	t.Helper()
	dot, err := exec.LookPath("dot")
	if err != nil {
		t.Log("dot (Graphviz) is not installed: DOT output not rendered")
		return
	}
	cmd := exec.Command(dot, "-Tsvg")
	cmd.Stdin = strings.NewReader(src)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "<svg") || errb.Len() > 0 {
		t.Errorf("dot -Tsvg: %v: %s\n%s", err, errb.String(), src)
	}
}

func TestGraphRecipes(t *testing.T) {
	tests := []struct {
		recipe string
		want   []string // in the Mermaid output
	}{
		{"openvnet.star", []string{
			`ns_vnet("vnet")`, `br_vnet__br_2dnet1{{"br-net1"}}`, `ns_vnet -.- br_vnet__br_2dnet1`,
			`ns_ns1 ---|"ns-veth1 172.16.1.1/24 -- veth1"| br_vnet__br_2dnet1`,
			`ns_router ---|"rt-net2 172.16.2.254/24 -- rt-net2-p"| br_vnet__br_2dnet2`,
		}},
		{"netns_blue.star", []string{`ns_blue ---|"veth1 192.168.10.21/24 -- veth0 192.168.10.20/32"| br_root__br0`, `ns_lan ---|"wire0 192.168.10.29/24 -- eth1"| br_root__br0`}},
		{"macvlan_modes.star", []string{
			`br_switch__br0{{"br0<br>192.168.122.1/24"}}`,
			`ns_vepa_2da ---|"macvlan vepa: macvlan0 192.168.122.31/24 on eth0"| ns_mvhost`,
			`ns_passthru ---|"macvlan passthru: macvlan0 192.168.122.41/24 on eth1"| ns_mvhost`,
		}},
		{"veth_container.star", []string{`ns_lxchost ---|"veth0-host 10.10.10.10/24 -- veth0-ct 10.10.10.11/24"| ns_netns01`}},
	}
	for _, tt := range tests {
		t.Run(tt.recipe, func(t *testing.T) {
			path := "../../recipes/" + tt.recipe
			m := graphCmd(t, path)
			if m.code != 0 {
				t.Fatalf("exit %d: %s", m.code, m.stderr)
			}
			checkMermaid(t, m.stdout)
			for _, want := range tt.want {
				if !strings.Contains(m.stdout, "  "+want+"\n") {
					t.Errorf("lacks %q:\n%s", want, m.stdout)
				}
			}
			d := graphCmd(t, "--format", "dot", path)
			if d.code != 0 || !strings.HasPrefix(d.stdout, "graph nsrun {") {
				t.Fatalf("dot: exit %d: %s", d.code, d.stderr)
			}
			checkDOT(t, d.stdout)
			if again := graphCmd(t, "--format", "dot", path); again != d {
				t.Error("a second drawing differs")
			}
		})
	}
}

// Graphviz renders the drawing of recipes/openvnet.star, made by the binary.
func TestGraphDOTRenders(t *testing.T) {
	if _, err := exec.LookPath("dot"); err != nil {
		t.Skip("dot (Graphviz) is not installed")
	}
	r := nsrun(t, "graph", "--format", "dot", "../../recipes/openvnet.star")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	cmd := exec.Command("dot", "-Tsvg")
	cmd.Stdin = strings.NewReader(r.stdout)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dot -Tsvg: %v\n%s", err, out)
	}
}

// Build draws what the sources cannot place completely, and escapes names
// so that no two objects share a node.
func TestGraphBuild(t *testing.T) {
	p := netip.MustParsePrefix
	g := graph.Build(graph.Topology{
		Namespaces: []string{"a-b", "a_2db"},
		Links: []graph.Link{
			{NS: "a-b", Name: "lo", Kind: "loopback"},
			{NS: "a-b", Name: "d0", Kind: "dummy", Addrs: []netip.Prefix{p("10.0.0.1/8")}},
			{NS: "a_2db", Name: "mv", Kind: "macvlan"}, // parent unknown (from a journal)
			{NS: "", Name: "br0", Kind: "bridge"},
			{NS: "", Name: "p0", Kind: "veth", Master: "br0", PeerNS: "a-b", PeerName: "p1"},
			{NS: "a-b", Name: "p1", Kind: "veth", PeerNS: "", PeerName: "p0"},
		},
	})
	var b bytes.Buffer
	if err := g.Write(&b, graph.Mermaid); err != nil {
		t.Fatal(err)
	}
	want := `flowchart LR
  host["host"]
  ns_a_2db("a-b<br>dummy d0 10.0.0.1/8")
  ns_a_5f2db("a_2db<br>macvlan mv")
  br_host__br0{{"br0"}}
  br_host__br0 ---|"p0 -- p1"| ns_a_2db
  host -.- br_host__br0
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	checkMermaid(t, b.String())
	b.Reset()
	if err := g.Write(&b, graph.DOT); err != nil {
		t.Fatal(err)
	}
	checkDOT(t, b.String())
	if err := g.Write(&b, "svg"); err == nil {
		t.Error("format svg: no error")
	}
}

func TestGraphUsage(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--help"}, 0, "Usage: nsrun graph", ""},
		{nil, 2, "", "name a LAB or a RECIPE"},
		{[]string{"--format", "svg", "x.star"}, 2, "", `unknown --format "svg"`},
		{[]string{"nolab"}, 2, "", `no lab "nolab"`},
		{[]string{"missing.star"}, 2, "", "missing.star"},
	}
	for _, tt := range tests {
		r := graphCmd(t, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) || !strings.Contains(r.stderr, tt.stderr) {
			t.Errorf("graph %v: %+v", tt.args, r)
		}
	}
	var out, errb bytes.Buffer
	if code := doMain([]string{"help", "graph"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "--format") || !strings.Contains(out.String(), "macvlan MODE") {
		t.Errorf("help graph: %d\n%s", code, out.String())
	}
}

// A lab that is up is drawn from its journal alone, bridge ports and
// macvlan parents included.
func TestGraphLab(t *testing.T) {
	nstest.Kernel(t)
	if r := nsrun(t, "testdata/blue.star"); r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	t.Cleanup(func() {
		if r := nsrun(t, "down", "blue"); r.code != 0 {
			t.Errorf("down: %+v", r)
		}
	})
	r := nsrun(t, "graph", "blue")
	if r.code != 0 {
		t.Fatalf("graph: %+v", r)
	}
	checkMermaid(t, r.stdout)
	for _, want := range []string{
		`  host["host"]`, `  ns_blue("blue")`, `  br_host__br0{{"br0<br>192.168.10.1/24"}}`,
		`  br_host__br0 ---|"veth0 -- veth1 192.168.10.21/24 fd00:10::21/64"| ns_blue`,
	} {
		if !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("lacks %q:\n%s", want, r.stdout)
		}
	}
	// The recipe's plan draws the same.
	if p := nsrun(t, "graph", "testdata/blue.star"); p.stdout != r.stdout {
		t.Errorf("plan's drawing differs:\n%s\nlab's:\n%s", p.stdout, r.stdout)
	}
	d := nsrun(t, "graph", "-f", "dot", "blue")
	checkDOT(t, d.stdout)
}

// The journals of the walkthroughs draw what they built: neutron's ports on
// br-int, veth_container's address once though the link moved after it
// was first set (a move takes no address along), a macvlan on its parent.
func TestGraphLabWalkthroughs(t *testing.T) {
	nstest.Kernel(t)
	for recipe, wants := range map[string][]string{
		"neutron":        {`  br_node__br_2dint ---|"i-vm1 -- eth0 10.0.0.3/24"| ns_vm1`, `  ns_node -.- br_node__br_2dex`},
		"veth_container": {`  ns_lxchost ---|"veth0-host 10.10.10.10/24 -- veth0-ct 10.10.10.11/24"| ns_netns01`},
		"macvlan_modes":  {`  ns_ct0 ---|"macvlan bridge: macvlan0 192.168.122.83/24 on eth0"| ns_mvhost`},
	} {
		if r := nsrun(t, "-q", "../../recipes/"+recipe+".star"); r.code != 0 {
			t.Fatalf("run %s: %+v", recipe, r)
		}
		r := nsrun(t, "graph", recipe)
		nsrun(t, "down", recipe)
		for _, want := range wants {
			if !strings.Contains(r.stdout, want+"\n") {
				t.Errorf("graph %s lacks %q:\n%s", recipe, want, r.stdout)
			}
		}
	}
}
