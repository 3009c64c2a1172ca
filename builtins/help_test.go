package builtins

import (
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Every predeclared name and every method has help.
func TestHelpCoversAPI(t *testing.T) {
	for name := range Predeclared(nil) {
		if Doc(name) == "" {
			t.Errorf("no help for %s", name)
		}
	}
	for _, v := range []starlark.HasAttrs{&Netns{name: "x"}, &Link{state: &linkState{ns: &Netns{name: "x"}}}} {
		for _, m := range v.AttrNames() {
			if Doc(v.Type()+"."+m) == "" && !strings.Contains(Doc(v.Type()), "."+m) {
				t.Errorf("no help for %s.%s", v.Type(), m)
			}
		}
	}
	if s := strings.Join(Summaries(), "\n"); !strings.Contains(s, "veth ") || !strings.Contains(s, "help ") {
		t.Errorf("Summaries:\n%s", s)
	}
}

// help() of a recipe's or a library's function prints its signature and
// docstring, dedented.
func TestHelpOfAFunction(t *testing.T) {
	var out strings.Builder
	thread := &starlark.Thread{Print: func(_ *starlark.Thread, msg string) { out.WriteString(msg + "\n") }}
	src := "def f(a, b = 1):\n    \"\"\"Does f.\n\n    More, indented.\n    \"\"\"\n    return a\nhelp(f)\n"
	if _, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "h.star", src, starlark.StringDict{"help": Help}); err != nil {
		t.Fatal(err)
	}
	want := "f(a, b)\n    Does f.\n    \n    More, indented.\n    (defined at h.star:1:1)\n"
	if out.String() != want {
		t.Errorf("help(f):\n%q\nwant:\n%q", out.String(), want)
	}
}
