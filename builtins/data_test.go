package builtins_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// load_data reads a YAML or JSON file beside the recipe into Starlark
// values, in the file's order, and a recipe builds from it.
func TestLoadData(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("topo.yaml", "nodes:\n  r1: {addr: 10.0.0.1/24}\n  h1: {addr: 10.0.0.2/24}\nmtu: 1400\n")
	write("more.json", "{\"b\": [1, 2], \"a\": null}\n")
	write("bad.yaml", "nodes: 1\nr1: a: b\n")
	abs := filepath.Join(dir, "more.json")
	src := `
t = load_data("topo.yaml")
print(list(t["nodes"].keys()), t["mtu"])
for name, n in t["nodes"].items():
    ns = netns(name)
    a, b = veth("v-" + name, "eth0", peer_netns = ns, mtu = t["mtu"])
    b.addr(n["addr"])
print(load_data(` + "`" + abs + "`" + `))
`
	src = strings.ReplaceAll(src, "`", `"`)
	rec := kernel.NewRecorder()
	out, rt, err := runIn(t, rec, dir, "d.star", src)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	if want := "[\"r1\", \"h1\"] 1400\n{\"b\": [1, 2], \"a\": None}\n"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
	if ok, _ := rec.NetnsExists("h1"); !ok {
		t.Errorf("no namespace h1 from the data")
	}
	rollback(t, rt)

	for _, c := range []struct{ src, want string }{
		{`load_data("bad.yaml")`, "bad.yaml:2: "},
		{`load_data("none.yaml")`, `load_data("none.yaml"): no such file`},
		{`load_data("../x.yaml")`, "escapes the recipe's directory"},
		{`load_data("d.star")`, "a data file is YAML (.yaml, .yml) or JSON (.json)"},
	} {
		_, rt, err := runIn(t, kernel.NewRecorder(), dir, "d.star", c.src)
		if err == nil || !strings.Contains(engine.Backtrace(err), c.want) || !strings.Contains(engine.Backtrace(err), "d.star:1:") {
			t.Errorf("%s: error %v, want one with %q at d.star:1", c.src, err, c.want)
		}
		rollback(t, rt)
	}
}

// load() of an absolute path takes the file the recipe names, with no -L.
func TestLoadAbsolute(t *testing.T) {
	lib := t.TempDir()
	if err := os.WriteFile(filepath.Join(lib, "lib.star"), []byte("def hello():\n    return \"hi\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, rt, err := runIn(t, kernel.NewRecorder(), t.TempDir(), "a.star", "load(\""+filepath.Join(lib, "lib.star")+"\", \"hello\")\nprint(hello())\n")
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	if out != "hi\n" {
		t.Errorf("printed %q", out)
	}
	rollback(t, rt)
}

func TestSprintf(t *testing.T) {
	src := `
print(sprintf("%-6s|%6s|%.2f|%8.3f|%05d|%x|%X|%+d|%e|%r|%%|%c|%s", "ab", "cd", 3.14159, 2, 42, 255, 255, 7, 1234.5, "q", 65, [1]))
`
	out, rt, err := runIn(t, kernel.NewRecorder(), t.TempDir(), "f.star", src)
	if err != nil {
		t.Fatal(engine.Backtrace(err))
	}
	if want := "ab    |    cd|3.14|   2.000|00042|ff|FF|+7|1.234500e+03|\"q\"|%|A|[1]\n"; out != want {
		t.Errorf("got  %q\nwant %q", out, want)
	}
	rollback(t, rt)
	for _, c := range []struct{ src, want string }{
		{`sprintf("%d", "x")`, "sprintf: %d: an int, not string"},
		{`sprintf("%s %s", 1)`, "not enough arguments"},
		{`sprintf("%s", 1, 2)`, "2 arguments"},
		{`sprintf("%5", 1)`, "incomplete verb"},
		{`sprintf("%q", 1)`, "unknown verb %q"},
	} {
		_, rt, err := runIn(t, kernel.NewRecorder(), t.TempDir(), "f.star", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.src, err, c.want)
		}
		rollback(t, rt)
	}
}
