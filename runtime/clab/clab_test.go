package clab

import (
	"strings"
	"testing"

	"go.starlark.net/syntax"
)

const lab = `name: two
topology:
  nodes:
    a:
      kind: linux
      image: alpine
      exec:
        - ip addr add 10.0.0.1/24 dev eth1
    b: {kind: linux, private: [/run/b]}
  links:
    - endpoints: ["a:eth1", "b:eth1"]
`

// The recipe's statements are on the file's lines: line 8's exec is on
// line 8, the link on line 11; what it leaves out is said, with its line.
func TestTranslate(t *testing.T) {
	topo, err := Translate("two.clab.yml", []byte(lab))
	if err != nil {
		t.Fatal(err)
	}
	if topo.Name != "two" {
		t.Errorf("name %q", topo.Name)
	}
	lines := strings.Split(string(topo.Recipe), "\n")
	for line, want := range map[int]string{4: `netns("a")`, 8: `exec_in(_n["a"], "ip addr add 10.0.0.1/24 dev eth1", once = True)`, 9: `netns("b", private = ["/run/b"])`, 11: `(lambda x, y: [x.up(), y.up()])(*veth("eth1", "eth1", netns = _n["a"], peer_netns = _n["b"]))`} {
		if !strings.Contains(lines[line-1], want) {
			t.Errorf("line %d is %q, want it to hold %q", line, lines[line-1], want)
		}
	}
	if _, err := (&syntax.FileOptions{TopLevelControl: true, While: true, Set: true, GlobalReassign: true}).Parse("two.clab.yml", topo.Recipe, 0); err != nil {
		t.Errorf("the recipe does not parse: %v\n%s", err, topo.Recipe)
	}
	if len(topo.Warnings) != 1 || !strings.Contains(topo.Warnings[0], "two.clab.yml:6: image: not used") {
		t.Errorf("warnings: %q", topo.Warnings)
	}
	if Name([]byte(lab)) != "two" || !Is("x/Lab.CLAB.yaml") || Is("lab.yml") {
		t.Errorf("Name or Is")
	}
}

// What nsrun cannot honour is refused with its line.
func TestTranslateRefuses(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"topology:\n  nodes:\n    a: {kind: linux}\n", "f.clab.yml:1: the topology has no name"},
		{"name: x\ntopology:\n  nodes:\n    a:\n      kind: nokia_srlinux\n", "f.clab.yml:5: node a: kind \"nokia_srlinux\" is not one nsrun runs"},
		{"name: x\ntopology:\n  nodes:\n    a:\n      kind: linux\n      binds:\n        - a:/b\n", "f.clab.yml:6: node a: binds: not something nsrun honours"},
		{"name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"c:eth1\"]\n", "f.clab.yml:6: endpoint c:eth1: no node \"c\""},
		{"name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"mgmt-net:a-eth1\"]\n", "nsrun has no mgmt-net links"},
		{"name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - type: vxlan\n      endpoints: [\"a:eth1\", \"a:eth2\"]\n", "f.clab.yml:6: a link of type \"vxlan\""},
		{"name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"a-eth1\", \"a:eth2\"]\n", "is not NODE:INTERFACE"},
		{"name: x\ntopology:\n  nodes:\n    a:\n      kind: bridge\n      exec: [\"true\"]\n", "a bridge node runs no commands"},
		{"name: x\nextra: 1\n", "f.clab.yml:2: extra: not a key"},
		{"name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"a:e1\", \"a:e2\"]\n      mtu: 20\n", "f.clab.yml:7: mtu: \"20\" is not an MTU"},
		{"name: [x\n", "f.clab.yml: "},
	} {
		_, err := Translate("f.clab.yml", []byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.src, err, c.want)
		}
	}
}
