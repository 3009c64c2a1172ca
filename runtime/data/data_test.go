package data

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"t.yaml", "name: lab\nnodes:\n  r1: {kind: linux, id: 1}\n  h1: {kind: linux}\nlinks:\n  - [\"r1:eth1\", \"h1:eth1\"]\n",
			`{"name": "lab", "nodes": {"r1": {"kind": "linux", "id": 1}, "h1": {"kind": "linux"}}, "links": [["r1:eth1", "h1:eth1"]]}`},
		// order kept, scalars typed as YAML 1.2 says
		{"t.yml", "z: 1\na: 0x10\nf: 1.5\nb: true\nn: null\ns: '007'\nbig: 123456789012345678901234567890\nk: ~\n",
			`{"z": 1, "a": 16, "f": 1.5, "b": True, "n": None, "s": "007", "big": 123456789012345678901234567890, "k": None}`},
		{"t.yaml", "base: &b {mtu: 1500, kind: linux}\nnode:\n  <<: *b\n  mtu: 9000\n",
			`{"base": {"mtu": 1500, "kind": "linux"}, "node": {"mtu": 9000, "kind": "linux"}}`},
		{"t.yaml", "", "None"},
		{"t.yaml", "1: one\n2: two\n", `{1: "one", 2: "two"}`},
		{"t.json", "{\n\t\"b\": [1, 2.5, \"x\", null, true],\n\t\"a\": {}\n}\n", `{"b": [1, 2.5, "x", None, True], "a": {}}`},
		{"t.json", "99999999999999999999999", "99999999999999999999999"},
	} {
		v, err := Decode(c.name, []byte(c.src))
		if err != nil {
			t.Errorf("%s %q: %v", c.name, c.src, err)
			continue
		}
		if v.String() != c.want {
			t.Errorf("%s %q:\n got %s\nwant %s", c.name, c.src, v, c.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for i, prev := 'b', 'a'; i <= 'j'; i, prev = i+1, i {
		bomb += string(i) + ": &" + string(i) + " [" + strings.Repeat("*"+string(prev)+", ", 9) + "*" + string(prev) + "]\n"
	}
	for _, c := range []struct{ name, src, want string }{
		{"t.yaml", "a: 1\nb: [1, 2\nc: 3\n", "t.yaml:1: did not find"},
		{"t.yaml", "a: 1\n---\nb: 2\n", "t.yaml:2: a second YAML document"},
		{"t.yaml", "a: 1\nb: !custom x\n", "t.yaml:2: the tag !custom"},
		{"t.yaml", "? [1, 2]\n: x\n", "t.yaml:1: a sequence as a key"},
		{"t.yaml", bomb, "more than 1048576 values"},
		{"t.json", "{\n  \"a\": 1,\n  \"b\": ,\n}\n", "t.json:3: "},
		{"t.json", "{\"a\": 1}\n{}", "t.json:2: more after the end"},
		{"t.json", "[1, 2", "t.json:1: unexpected end"},
		{"t.toml", "a = 1", "a data file is YAML"},
	} {
		_, err := Decode(c.name, []byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %q: error %v, want one with %q", c.name, c.src, err, c.want)
		}
	}
}
