package main

import (
	"slices"
	"testing"
)

// A command line for a kept sandbox names the lab as the sandbox knows it
// and drops --sandbox-id, but never touches what exec runs.
func TestForSandbox(t *testing.T) {
	for _, c := range []struct {
		args      []string
		name, lab string
		verbatim  bool
		want      []string
	}{
		{[]string{"exec", "42:kept", "blue", "--", "ip", "42:kept"}, "42:kept", "kept", true, []string{"exec", "kept", "blue", "--", "ip", "42:kept"}},
		{[]string{"exec", "--sandbox-id", "42", "kept", "blue", "tool", "--sandbox-id=x", "kept"}, "42:kept", "kept", true, []string{"exec", "kept", "blue", "tool", "--sandbox-id=x", "kept"}},
		{[]string{"down", "kept", "--sandbox-id=42", "-q"}, "42:kept", "kept", false, []string{"down", "kept", "-q"}},
		{[]string{"inspect", "--json", "42:kept"}, "42:kept", "kept", false, []string{"inspect", "--json", "kept"}},
	} {
		if got := forSandbox(c.args, c.name, c.lab, c.verbatim); !slices.Equal(got, c.want) {
			t.Errorf("forSandbox(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}
