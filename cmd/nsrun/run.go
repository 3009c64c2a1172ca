package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"go.starlark.net/syntax"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/builtins"
	"github.com/nsrun/nsrun/recipes"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/machines"
	"github.com/nsrun/nsrun/runtime/sandbox"
	"github.com/nsrun/nsrun/runtime/store"
)

func newFlags(name, args string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.TrimSpace("Usage: nsrun "+name+" "+args))
		if fs.HasFlags() {
			fmt.Fprintf(fs.Output(), "\nFlags:\n%s", fs.FlagUsages())
		}
	}
	return fs
}

// parse parses flags; done is true when the command should return code.
func parse(fs *pflag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	usage := fs.Usage
	fs.Usage = func() {} // pflag calls it on -h and on errors: the usage is printed once, below
	err := fs.Parse(args)
	fs.Usage = usage
	if errors.Is(err, pflag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return engine.ExitOK, true
	}
	if err != nil {
		fmt.Fprintf(fs.Output(), "nsrun %s: %v (see `nsrun help %s`)\n", fs.Name(), err, fs.Name())
		return engine.ExitUsage, true
	}
	return 0, false
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "[--json] [flags] RECIPE [ARGS...]", stderr)
	fs.SetInterspersed(false) // what follows the recipe is the recipe's
	name := fs.String("name", "", "name of the lab (default: the recipe's base name)")
	prefix := fs.String("prefix", "", "scope the lab's names: namespaces PREFIX-NAME, host links PREFIX-NAME within 15 bytes, the lab PREFIX-RECIPE (one recipe up twice)")
	rm := fs.Bool("rm", false, "remove the lab at the end, even on success")
	keep := fs.Bool("keep-on-error", false, "leave a failed run's objects in place (still recorded: `nsrun down` removes them)")
	sandbox := fs.Bool("sandbox", false, sandboxUsage)
	keepSandbox := fs.Bool("keep", false, "with --sandbox: keep the sandbox and its lab after the run, for exec, shell, inspect and down")
	verbose := fs.BoolP("verbose", "v", false, "print each change as it is made")
	quiet := fs.BoolP("quiet", "q", false, "print only errors")
	libs := fs.StringArrayP("lib", "L", nil, "a directory to search for load()ed libraries (repeatable; also $NSRUN_PATH)")
	timeout := fs.Duration("timeout", 0, "stop the run, and roll it back, after this long (e.g. 30s, 5m; 0: no limit)")
	maxSteps := fs.Uint64("max-steps", engine.DefaultMaxSteps, "stop a recipe, and roll it back, after this many Starlark steps")
	maxMemory := fs.Uint64("max-memory", engine.DefaultMaxMemory>>20, "stop a recipe, and roll it back, once nsrun holds more than this many MiB of memory for it")
	asJSON := fs.Bool("json", false, "at the end, print what the run did as JSON on stdout (the recipe's print()s go to stderr; see the README)")
	lease := fs.Duration("lease", machines.DefaultLease, "a lab across machines: how long a machine's part goes on without word from this run before it rolls itself back")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "nsrun run: missing RECIPE")
		fs.Usage()
		return engine.ExitUsage
	}
	recipe := fs.Arg(0)
	warnIgnoredFlags(recipe, fs.Args()[1:], stderr)
	if fs.Changed("name") && *name == "" {
		fmt.Fprintln(stderr, "nsrun run: --name is empty (leave it out for the recipe's base name)")
		return engine.ExitUsage
	}
	if *keep && *sandbox && !*keepSandbox {
		fmt.Fprintln(stderr, "nsrun run: --keep-on-error with --sandbox needs --keep: the sandbox, and a failed lab in it, go when the run ends")
		return engine.ExitUsage
	}
	if *keepSandbox && (!*sandbox || *rm) {
		fmt.Fprintln(stderr, "nsrun run: --keep keeps a sandbox: it goes with --sandbox, and not with --rm")
		return engine.ExitUsage
	}
	inside, code, done := enterIfSandboxed(*sandbox, *keepSandbox, stderr)
	if done {
		return code
	}
	if inside && !*keepSandbox {
		*rm = true // the sandbox vanishes at exit: tear down through the same undo path
	}
	if !inside {
		if err := needAdmin(); err != nil {
			fmt.Fprintf(stderr, "nsrun run: %v\n", err)
			return engine.ExitUsage
		}
	}

	ctx, stop := interruptible()
	defer stop()
	k := kernel.NewNetlink(store.NetnsDir)
	defer k.Close()
	out := stdout
	if *asJSON {
		out = stderr // stdout holds the result
	}
	rep := &reporter{stderr: stderr}
	if !*verbose && !*quiet {
		rep.line = newProgressLine(stderr)
		out, rep.stderr = rep.line.writer(out), rep.line.writer(stderr)
	}
	var coord *machines.Coordinator
	r := engine.Run(ctx, engine.RunOptions{
		Connect:     connector(recipe, fs.Args()[1:], *name, *prefix, *lease, &coord),
		Recipe:      recipe,
		Args:        fs.Args()[1:],
		Lab:         *name,
		Prefix:      *prefix,
		Remove:      *rm,
		KeepOnError: *keep,
		StateDir:    store.StateDir,
		Kernel:      k,
		Interp:      newInterp(fs.Args()[1:], *libs),
		Stdout:      out,
		Stderr:      rep.stderr,
		Reporter:    rep,
		Verbose:     *verbose,
		Quiet:       *quiet,
		Timeout:     *timeout,
		MaxSteps:    *maxSteps,
		MaxMemory:   *maxMemory << 20,
	})
	rep.line.clear()
	if coord != nil {
		coord.Close()
		if !*quiet || r.Err != nil {
			for _, p := range coord.Parts() {
				fmt.Fprintln(rep.stderr, "nsrun:", p)
			}
		}
	}
	code = printRun(rep.stderr, r, *verbose, *quiet)
	if *asJSON {
		printJSON(stdout, runJSON(r))
	}
	return holdIfKept(inside && *keepSandbox, code)
}

func newInterp(argv, libs []string) *engine.Interp {
	if p := os.Getenv("NSRUN_PATH"); p != "" {
		libs = append(libs, filepath.SplitList(p)...)
	}
	return &engine.Interp{Predeclared: builtins.Predeclared(argv), Std: recipes.Std, Path: libs, Warn: os.Stderr}
}

// enterIfSandboxed handles --sandbox: outside, it runs this command again inside a
// sandbox and returns its exit code (done); inside, it sets the sandbox up
// and reports inside, so the command runs on.
func enterIfSandboxed(want, keep bool, stderr io.Writer) (inside bool, code int, done bool) {
	if want && !sandbox.Inside() {
		var holdDir string
		if keep {
			holdDir = sandbox.HoldDir(store.StateDir)
		}
		code, err := sandbox.Run(holdDir)
		if err != nil {
			fmt.Fprintf(stderr, "nsrun: %v\n", err)
			return false, engine.ExitUsage, true
		}
		return false, code, true
	}
	if !sandbox.Inside() {
		return false, 0, false
	}
	if err := enterSandbox(); err != nil {
		fmt.Fprintf(stderr, "nsrun: setting up the sandbox: %v\n", err)
		return true, engine.ExitUsage, true
	}
	return true, 0, false
}

// enterSandbox makes this process's namespaces a sandbox: private
// /run/netns, /run/nsrun and /sys, and a loopback that is up.
func enterSandbox() error {
	if err := sandbox.Setup(store.NetnsDir, store.StateDir); err != nil {
		return err
	}
	k := kernel.NewNetlink(store.NetnsDir)
	defer k.Close()
	return k.LinkSetUp(kernel.Host, "lo", true)
}

const sandboxUsage = "run in a sandbox: a fresh network and mount namespace (and, without root, a user namespace) that the machine cannot see and that vanishes at exit"

// holdIfKept makes a kept sandbox's inside its holder once the command has
// left a lab in it (one that succeeded, or a failed one kept with
// --keep-on-error), passing on code; else it returns code.
func holdIfKept(kept bool, code int) int {
	if kept && sandbox.CanHold() && len(sandboxLabs()) > 0 {
		sandbox.Hold(code, sandboxLabs)
	}
	return code
}

// sandboxLabs lists the labs in this (kept) sandbox.
func sandboxLabs() []string {
	labs, _ := store.List(store.StateDir)
	var names []string
	for _, l := range labs {
		names = append(names, l.Name)
	}
	return names
}

// needAdmin explains, without root, that changing the machine's network
// needs it, and what to do instead.
func needAdmin() error {
	if hasNetAdmin() {
		return nil
	}
	return errors.New("changing the machine's network needs root (CAP_NET_ADMIN); without it, --sandbox runs the recipe in a sandbox of its own")
}

// hasNetAdmin reports whether CAP_NET_ADMIN is in this process's effective set.
func hasNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.Geteuid() == 0
	}
	return data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0
}

// warnIgnoredFlags warns when what follows a recipe looks like flags of
// nsrun's and the recipe never reads argv: `nsrun graph x.star --format
// dot` gives x.star the arguments, not graph the flag.
func warnIgnoredFlags(recipe string, argv []string, stderr io.Writer) {
	var flags []string
	for _, a := range argv {
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
		}
	}
	if len(flags) == 0 {
		return
	}
	if fi, err := os.Stat(recipe); err != nil || !fi.Mode().IsRegular() || fi.Size() > engine.MaxSourceSize {
		return // a FIFO is read once, by the run
	}
	src, err := os.ReadFile(recipe)
	if err != nil {
		return
	}
	f, err := engine.FileOptions.Parse(recipe, src, 0)
	if err != nil {
		return // the run reports it
	}
	reads := false
	syntax.Walk(f, func(n syntax.Node) bool {
		if id, ok := n.(*syntax.Ident); ok && id.Name == "argv" {
			reads = true
		}
		return !reads
	})
	if !reads {
		fmt.Fprintf(stderr, "nsrun: %s never reads argv: %s after it go to the recipe, not to nsrun (flags go before the recipe)\n", recipe, strings.Join(flags, " "))
	}
}
