package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/nsexec"
)

func main() {
	nsexec.MaybeHelper()
	nsexec.RaiseNofile() // a large lab needs no ulimit (see Netlink.OpenNetns too)
	survivePipes()
	collectLess()
	os.Exit(profiled(func() int { return doMain(os.Args[1:], os.Stdout, os.Stderr) }))
}

// collectLess has the garbage collector run half as often as Go's default:
// a run is short, and a big lab's collections (of the recipe's values and
// the journal's steps, live till the end) cost it more than the memory
// does — but only up to a point: each page the heap grows by is a page
// fault, which on a virtual machine costs more than collecting it (about
// 12 µs a page on the 2-core VM nsrun is measured on). At 400, a one-host
// apply to a 1,000-host lab touched 60 MiB and took 1.17x as long as at
// 200 (50 MiB); a run of the lab took as long at either. A soft limit of
// 64 MiB brings collections back as the heap nears it. GOGC (and then
// GOMEMLIMIT alone) decide if set.
func collectLess() {
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(200)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(64 << 20)
	}
}

type command struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands: the core ones here, the others added by
// their own files through register.
var commands []command

// register adds subcommands; call it from an init function.
func register(cs ...command) { extra = append(extra, cs...) }

var extra []command

// allCommands is the core commands, then the registered ones by name, help last.
func allCommands() []command {
	all := append([]command(nil), commands...)
	help := all[len(all)-1]
	all = all[:len(all)-1]
	more := append([]command(nil), extra...)
	sort.Slice(more, func(i, j int) bool { return more[i].name < more[j].name })
	return append(append(all, more...), help)
}

func init() {
	commands = []command{
		{"run", "[--json] [flags] RECIPE [ARGS...]", "run a recipe; on success its topology stays up as a lab", cmdRun},
		{"ls", "[--json]", "list the labs that are up", cmdLs},
		{"down", "[-q] [--json] LAB...", "remove labs, newest object first", cmdDown},
		{"recover", "", "finish the rollback of runs that died (every command does this first)", cmdRecover},
		{"gc", "[--yes]", "list (and with --yes remove) objects tagged as nsrun's whose lab record is gone", cmdGC},
		{"version", "", "print nsrun's version", cmdVersion},
		{"help", "[COMMAND]", "show help", cmdHelp},
	}
}

func doMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return engine.ExitUsage
	}
	switch args[0] {
	case "-h", "--help":
		usage(stdout)
		return engine.ExitOK
	case "--version":
		return cmdVersion(nil, stdout, stderr)
	}
	for _, c := range allCommands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	if strings.HasPrefix(args[0], "-") || strings.HasSuffix(args[0], ".star") || fileExists(args[0]) {
		return cmdRun(args, stdout, stderr) // `nsrun RECIPE` is `nsrun run RECIPE`
	}
	fmt.Fprintf(stderr, "nsrun: unknown command %q (see `nsrun help`)\n", args[0])
	return engine.ExitUsage
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

func usage(w io.Writer) {
	fmt.Fprint(w, `nsrun runs network recipes: Starlark programs whose builtins build Linux network
topologies in network namespaces through netlink. A failed run rolls back
everything it created, and never touches anything it did not create.

Usage:
  nsrun [flags] RECIPE [ARGS...]    same as nsrun run

Commands:
`)
	width := 0
	for _, c := range allCommands() {
		width = max(width, len(c.name+" "+c.args))
	}
	for _, c := range allCommands() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name+" "+c.args, c.summary)
	}
	fmt.Fprint(w, `
Exit codes: 0 success; 1 the recipe failed and was rolled back; 2 usage or
invalid input; 3 a rollback or teardown could not remove everything; 4 (plan,
graph) the plan could not go on to the recipe's end.

Run 'nsrun help COMMAND' for a command's flags.
`)
}

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return engine.ExitOK
	}
	for _, c := range allCommands() {
		if c.name == args[0] {
			return c.run([]string{"--help"}, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "nsrun: unknown command %q\n", args[0])
	return engine.ExitUsage
}

// cmdVersion prints the version nsrun was built as: its module version, or
// the commit it was built from.
func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "", stderr)
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "nsrun version: takes no arguments")
		return engine.ExitUsage
	}
	fmt.Fprintln(stdout, "nsrun", version())
	return engine.ExitOK
}

// version is the version nsrun was built as: its module version, or the
// commit it was built from.
func version() string {
	v, commit, dirty := "(devel)", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if commit != "" {
		v += " " + commit[:min(12, len(commit))]
		if dirty {
			v += "+modified"
		}
	}
	return v
}
