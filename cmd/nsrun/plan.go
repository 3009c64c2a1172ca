package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/store"
	"github.com/spf13/pflag"
)

func init() {
	register(command{"plan", "[--format text|sh|json] [-L DIR] RECIPE [ARGS...]", "print what a recipe would change, as ip/nft commands or a shell script, changing nothing (no root needed)", cmdPlan})
}

// cmdPlan runs a recipe on a recording kernel (engine.Plan) and prints the
// changes it would make, in order, as the equivalent iproute2/nft commands.
// What needs a live network is not run: a command started in a namespace
// shows as a "# ..." comment line, and a check (ping, capture) counts as
// passed. A recipe that then acts on what only a live network could answer
// ends the plan there, with a note on stderr.
func cmdPlan(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("plan", "[--format text|sh|json] [-L DIR] RECIPE [ARGS...]", stderr)
	fs.SetInterspersed(false) // what follows the recipe is the recipe's
	format := fs.StringP("format", "f", "text", "text (one command a line), sh (a shell script that builds the lab) or json (see below)")
	asJSON := fs.Bool("json", false, "the same as --format json")
	name := fs.String("name", "", "plan as lab LAB (MACs derive from the lab's name; default: the recipe's base name)")
	prefix := fs.String("prefix", "", "scope the lab's names: namespaces PREFIX-NAME, host links PREFIX-NAME within 15 bytes, the lab PREFIX-RECIPE (one recipe up twice)")
	libs := fs.StringArrayP("lib", "L", nil, "a directory to search for load()ed libraries (repeatable; also $NSRUN_PATH)")
	maxSteps := fs.Uint64("max-steps", engine.DefaultMaxSteps, "stop a recipe after this many Starlark steps")
	maxMemory := fs.Uint64("max-memory", engine.DefaultMaxMemory>>20, "stop a recipe once nsrun holds more than this many MiB of memory for it")
	machine := fs.String("machine", "", "of a lab across machines, print only machine M's part (\"local\": the coordinator's)")
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(fs.Output(), `
Runs RECIPE without touching the machine (no root needed) and prints the
changes it would make, oldest first, one ip/nft/sysctl command a line.
Commands the recipe starts in namespaces (exec_in, spawn_in, dhcp) are
"# ..." comments; checks that need a live network (ping, reach, capture)
are not run and are assumed to pass, with plausible values ("# assumed at"
lines say where the recipe went on from such a value). The same recipe
always gives the same plan.

--format sh prints the plan as a POSIX shell script: run as root in an
empty network namespace, it builds the namespaces, links (kind, MAC, MTU,
master, state), addresses, routes, sysctls and NAT that a run builds, e.g.
  nsrun plan --format sh lab.star > lab.sh && unshare -n -m sh -c \
    'mount -n -t tmpfs tmpfs /run && ip link set lo up && sh lab.sh'
What the recipe's commands would make (a daemon's routes, a DHCP lease) is
not built, and nsrun's ownership marks (link aliases) are left out.

--json prints an array with one object per line of the plan:
  {"op": "link", "cmd": "ip link add veth0 type veth peer name veth1 ...", "pos": "lab.star:3:10"}
op is the journal operation (netns, link, up, master, addr, route, sysctl,
proc, ...; "exec" for a command that is not a change) and pos the recipe's
file:line:col that made it ("" where the plan cannot tell).

A lab across machines (see machine()) is planned whole and printed split
per machine: a section for each, in the order they were declared (the
coordinator's, "local", first), each in the order its changes are made;
--json gives each line its machine ("on"), and a link across machines its
VXLAN's VNI ("vni"). --machine M prints M's part
alone: with --format sh, a script that builds M's part on M (needed for
sh: a part is built on its own machine).

Exit codes: 0 planned; 2 usage, or the recipe failed (its backtrace is printed);
4 the plan ends early (the recipe acted on an answer of the network), and is partial.
`)
	}
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if *asJSON {
		*format = "json"
	}
	if *format != "text" && *format != "sh" && *format != "json" {
		fmt.Fprintf(stderr, "nsrun plan: unknown --format %q (want text, sh or json)\n", *format)
		return engine.ExitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "nsrun plan: missing RECIPE")
		fs.Usage()
		return engine.ExitUsage
	}
	recipe, argv := fs.Arg(0), fs.Args()[1:]
	warnIgnoredFlags(recipe, argv, stderr)
	if code, ok := checkName(fs, *name, stderr); !ok {
		return code
	}
	rec, rt, err := engine.Plan(context.Background(), engine.RunOptions{
		Recipe: recipe, Args: argv, Lab: *name, Prefix: *prefix, Interp: newInterp(argv, *libs), MaxSteps: *maxSteps, MaxMemory: *maxMemory << 20,
	})
	if err != nil && !rec.Observed {
		fmt.Fprintln(stderr, engine.Backtrace(err))
		fmt.Fprintln(stderr, "nsrun plan: the recipe failed while planning")
		return engine.ExitUsage
	}
	const partial = "the plan ends here, partial: the recipe acted on an answer of the network that only a real run has"
	entries := planEntries(rec.Log, rt.Journal.Steps())
	parts := planParts(entries, rt)
	if *machine != "" {
		if order := partOrder(rt); order == nil {
			fmt.Fprintf(stderr, "nsrun plan: --machine %q: the recipe declares no machines (see machine())\n", *machine)
			return engine.ExitUsage
		} else if !slices.Contains(order, *machine) {
			fmt.Fprintf(stderr, "nsrun plan: --machine %q: the recipe declares no such machine (it has %s)\n", *machine, strings.Join(order, ", "))
			return engine.ExitUsage
		}
		entries = parts[*machine]
		parts = nil
	}
	switch *format {
	case "json":
		b, jerr := json.MarshalIndent(entries, "", "  ")
		if jerr != nil {
			fmt.Fprintf(stderr, "nsrun plan: %v\n", jerr)
			return engine.ExitUsage
		}
		fmt.Fprintf(stdout, "%s\n", b)
	case "sh":
		if parts != nil {
			fmt.Fprintf(stderr, "nsrun plan: the lab is across machines (%s): --format sh prints one machine's part, chosen with --machine\n", strings.Join(partOrder(rt), ", "))
			return engine.ExitUsage
		}
		writeScript(stdout, recipe, rt.Lab, cmds(entries))
		if err != nil {
			fmt.Fprintf(stdout, "# %s\nexit %d\n", partial, engine.ExitPartial)
		}
	default:
		if parts == nil {
			for _, line := range cmds(entries) {
				fmt.Fprintln(stdout, line)
			}
			break
		}
		for i, m := range partOrder(rt) {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			how := "the coordinator: where nsrun runs"
			if mm, ok := rt.Machines()[m]; ok {
				how = "ssh " + mm.SSH
			}
			fmt.Fprintf(stdout, "# machine %s (%s)\n", m, how)
			lines := cmds(parts[m])
			if len(lines) == 0 {
				fmt.Fprintln(stdout, "# (nothing of the lab's)")
			}
			for _, line := range lines {
				fmt.Fprintln(stdout, line)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, engine.Backtrace(err))
		fmt.Fprintln(stderr, "nsrun plan: "+partial)
		return engine.ExitPartial
	}
	return engine.ExitOK
}

// writeScript prints a plan's lines as a POSIX shell script that stops at
// the first command that fails. Comment lines stay comments, each of their
// lines (a made-up answer's message may hold several).
func writeScript(w io.Writer, recipe, lab string, log []string) {
	fmt.Fprintf(w, `#!/bin/sh
# Lab %s of %s, as nsrun plan --format sh prints it.
# Run as root in an empty network namespace with a /run/netns of its own:
# it builds the namespaces, links, addresses, routes, sysctls and NAT that
# nsrun run builds. Commands the recipe runs in its namespaces are comments.
set -e
`, lab, strings.ReplaceAll(recipe, "\n", " ")) // a comment line, whatever the path holds
	for _, line := range log {
		if strings.HasPrefix(line, "# ") {
			line = strings.ReplaceAll(line, "\n", "\n# ")
		}
		fmt.Fprintln(w, line)
	}
}

// checkName refuses an empty or invalid --name.
func checkName(fs *pflag.FlagSet, name string, stderr io.Writer) (int, bool) {
	if !fs.Changed("name") {
		return 0, true
	}
	if err := store.ValidName(name); err != nil {
		fmt.Fprintf(stderr, "nsrun %s: --name: %v\n", fs.Name(), err)
		return engine.ExitUsage, false
	}
	return 0, true
}

// planEntry is one line of `nsrun plan --json`.
type planEntry struct {
	Op  string `json:"op"`  // the journal operation; "exec" for a command started that is not a change
	Cmd string `json:"cmd"` // the iproute2/nft command, or "# ..." for a command run in a namespace
	Pos string `json:"pos"` // recipe file:line:col; "" if unknown
	// On is, in a lab across machines, the machine the line is of; VNI a
	// link across machines' (see machine()).
	On  string `json:"on,omitempty"`
	VNI int    `json:"vni,omitempty"`
	ns  string // the namespace of its step, or of the command it runs
}

// cmds are the entries' commands, but those of steps that log none.
func cmds(entries []planEntry) []string {
	var lines []string
	for _, e := range entries {
		if e.Cmd != "" {
			lines = append(lines, e.Cmd)
		}
	}
	return lines
}

// partOrder is the order of a lab's machines: the coordinator's, then as
// the recipe declared them; nil for a lab on one machine.
func partOrder(rt *engine.Runtime) []string {
	var order []string
	for _, s := range rt.Journal.Steps() {
		if s.Op == journal.OpPart {
			if order == nil {
				order = []string{engine.Local}
			}
			order = append(order, s.Name)
		}
	}
	return order
}

// planParts splits a plan of a lab across machines per machine, marking
// each entry with its machine (On): a step's is its own; a command run in
// a namespace is of the namespace's machine; any other line (a note of
// what the plan assumed) of the line's before it. Nil for a lab on one
// machine.
func planParts(entries []planEntry, rt *engine.Runtime) map[string][]planEntry {
	if partOrder(rt) == nil {
		return nil
	}
	parts := map[string][]planEntry{}
	last := engine.Local
	for i := range entries {
		e := &entries[i]
		switch {
		case e.On != "":
		case e.ns != "":
			e.On = rt.MachineOf(e.ns, "")
		default:
			e.On = last
		}
		last = e.On
		parts[e.On] = append(parts[e.On], *e)
	}
	return parts
}

// planEntries pairs the recorder's log lines with the journal's steps, both
// in the order they were made. Each change logs one line within its step;
// a started command logs a "# ..." line, which is a step (proc) only for a
// background process. A line is paired with a step only if it names the
// step's object, looking at most a few steps ahead, so that a step that
// logs nothing cannot shift the others: such a step gets an empty cmd.
func planEntries(log []string, steps []journal.Step) []planEntry {
	const lookahead = 3
	out := make([]planEntry, 0, len(log))
	j := 0
	for _, line := range log {
		k := -1
		for i, n := j, 0; i < len(steps) && n < lookahead; i++ {
			if steps[i].Op == journal.OpPart {
				continue // a machine declared: never a line
			}
			if lineOfStep(line, steps[i]) {
				k = i
				break
			}
			n++
		}
		if k < 0 {
			op, pos := "exec", ""
			if !strings.HasPrefix(line, "# ") {
				op = ""
			}
			if rest, ok := strings.CutPrefix(line, "# assumed at "); ok {
				// A check the plan assumed passes (see engine.Plan).
				op = "assumed"
				pos, _, _ = strings.Cut(rest, ": ")
			}
			e := planEntry{Op: op, Cmd: line, Pos: pos}
			if rest, ok := strings.CutPrefix(line, "# ip netns exec "); ok {
				e.ns, _, _ = strings.Cut(rest, " ")
			}
			out = append(out, e)
			continue
		}
		for ; j < k; j++ {
			out = append(out, stepEntry(steps[j], ""))
		}
		out = append(out, stepEntry(steps[k], line))
		j = k + 1
	}
	for ; j < len(steps); j++ {
		out = append(out, stepEntry(steps[j], ""))
	}
	return out
}

// stepEntry is the entry of step s, logged as line ("" none).
func stepEntry(s journal.Step, line string) planEntry {
	return planEntry{Op: s.Op, Cmd: line, Pos: s.Pos, On: s.On, VNI: s.VNI, ns: s.NS}
}

// lineOfStep reports whether a log line can be step's: a "# " line only a
// process's, whose command it starts with; any other line one that names
// the step's object.
func lineOfStep(line string, s journal.Step) bool {
	if cmd, ok := strings.CutPrefix(line, "# "); ok {
		if s.Op != journal.OpProc {
			return false
		}
		if s.NS != kernel.Host {
			cmd = strings.TrimPrefix(cmd, "ip netns exec "+s.NS+" ")
		}
		return cmd == s.Name || strings.HasPrefix(cmd, s.Name+" ")
	}
	if s.Op == journal.OpProc {
		return false
	}
	if s.Op == journal.OpRoute && s.Route != nil {
		return strings.Contains(line, " route ") && strings.Contains(line, s.Route.String())
	}
	return s.Name == "" || containsWord(line, s.Name)
}

// containsWord reports whether word is in line between spaces, '=' or the
// line's ends.
func containsWord(line, word string) bool {
	for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '=' }) {
		if f == word {
			return true
		}
	}
	return false
}
