package builtins

import (
	"strings"
	"testing"

	"go.starlark.net/starlark"
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
