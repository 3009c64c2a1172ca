package main

import (
	"fmt"
	"io"

	"github.com/nsrun/nsrun/builtins"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/machines"
	"github.com/nsrun/nsrun/runtime/store"
)

func init() {
	register(command{"apply", "[--name LAB] [--dry-run] [flags] RECIPE [ARGS...]", "change a lab that is up to what an edited recipe makes, as one transaction (a lab that is not up is run)", cmdApply})
}

func cmdApply(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("apply", "[--name LAB] [--dry-run] [flags] RECIPE [ARGS...]", stderr)
	fs.SetInterspersed(false) // what follows the recipe is the recipe's
	name := fs.String("name", "", "name of the lab (default: the recipe's base name)")
	prefix := fs.String("prefix", "", "scope the lab's names: namespaces PREFIX-NAME, host links PREFIX-NAME within 15 bytes, the lab PREFIX-RECIPE (one recipe up twice)")
	dry := fs.Bool("dry-run", false, "print what apply would remove (-), change (~) and add (+), changing nothing")
	verbose := fs.BoolP("verbose", "v", false, "print each change as it is made")
	quiet := fs.BoolP("quiet", "q", false, "print only errors")
	libs := fs.StringArrayP("lib", "L", nil, "a directory to search for load()ed libraries (repeatable; also $NSRUN_PATH)")
	timeout := fs.Duration("timeout", 0, "stop the apply, and roll it back, after this long (0: no limit)")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "nsrun apply: missing RECIPE")
		fs.Usage()
		return engine.ExitUsage
	}
	if fs.Changed("name") && *name == "" {
		fmt.Fprintln(stderr, "nsrun apply: --name is empty (leave it out for the recipe's base name)")
		return engine.ExitUsage
	}
	recipe := fs.Arg(0)
	warnIgnoredFlags(recipe, fs.Args()[1:], stderr)
	if !*dry {
		if err := needAdmin(); err != nil {
			fmt.Fprintf(stderr, "nsrun apply: %v\n", err)
			return engine.ExitUsage
		}
	}
	ctx, stop := interruptible()
	defer stop()
	k := kernel.NewNetlink(store.NetnsDir)
	defer k.Close()
	rep := &reporter{stderr: stderr}
	var coord *machines.Coordinator // a lab across machines that is not up: run
	r := engine.Apply(ctx, engine.ApplyOptions{
		RunOptions: engine.RunOptions{
			Connect:  connector(recipe, fs.Args()[1:], *name, *prefix, 0, &coord),
			Recipe:   recipe,
			Args:     fs.Args()[1:],
			Lab:      *name,
			Prefix:   *prefix,
			StateDir: store.StateDir,
			Kernel:   k,
			Interp:   newInterp(fs.Args()[1:], *libs),
			Stdout:   stdout,
			Stderr:   stderr,
			Reporter: rep,
			Verbose:  *verbose,
			Quiet:    *quiet,
			Timeout:  *timeout,
		},
		DryRun:   *dry,
		Diff:     stdout,
		Removals: builtins.Removals,
	})
	if coord != nil {
		coord.Close()
		for _, p := range coord.Parts() {
			fmt.Fprintln(stderr, "nsrun:", p)
		}
	}
	if *dry && r.Err == nil {
		return engine.ExitOK
	}
	code := printRun(stderr, r, *verbose, *quiet)
	if r.Err != nil && r.Stage == engine.StageRun && r.State == store.LabUp {
		fmt.Fprintf(stderr, "nsrun: lab %q is as it was before the apply\n", r.Lab)
	}
	return code
}
