package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/graph"
	"github.com/nsrun/nsrun/runtime/store"
)

func init() {
	register(command{"graph", "[--format mermaid|dot] LAB|RECIPE [ARGS...]", "draw a lab's or a recipe's topology (Mermaid or Graphviz)", cmdGraph})
}

// cmdGraph draws a topology: from a recipe (an argument ending in .star, or
// a file), the one its plan builds, which needs no root; from a lab's name,
// the one its journal records.
func cmdGraph(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("graph", "[--format mermaid|dot] [-L DIR] LAB|RECIPE [ARGS...]", stderr)
	fs.SetInterspersed(false)
	format := fs.StringP("format", "f", graph.Mermaid, "mermaid (a flowchart for Markdown) or dot (Graphviz: dot -Tsvg)")
	libs := fs.StringArrayP("lib", "L", nil, "a directory to search for load()ed libraries (repeatable; also $NSRUN_PATH)")
	name := fs.String("name", "", "plan a RECIPE as lab LAB (default: its base name)")
	sandboxIDFlag(fs)
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(fs.Output(), `
Namespaces are nodes (the host too, when it holds links of the lab), bridges
are switch nodes (hexagons, tied to their namespace by a dashed line), and
links are edges labelled with their names and addresses: a veth pair is one
edge between the namespaces (or bridges) of its ends; a macvlan is an edge
to its parent's namespace labelled "macvlan MODE". Links no edge shows are
listed in their namespace's node. The order is always the same.

A RECIPE (an argument ending in .star, or a file) is planned, as by
'nsrun plan': nothing is changed and no root is needed. A LAB is drawn from
its journal, which records every link's bridge and a macvlan's parent.

Exit codes: 0 drawn; 2 usage, no such lab, or the recipe failed; 4 the plan
of the recipe ended early: the drawing, marked partial, shows what it built.
`)
	}
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "nsrun graph: name a LAB or a RECIPE")
		fs.Usage()
		return engine.ExitUsage
	}
	if *format != graph.Mermaid && *format != graph.DOT {
		fmt.Fprintf(stderr, "nsrun graph: unknown --format %q (want mermaid or dot)\n", *format)
		return engine.ExitUsage
	}
	target := fs.Arg(0)
	if code, ok := checkName(fs, *name, stderr); !ok {
		return code
	}
	var topo graph.Topology
	var partial string
	var err error
	if strings.HasSuffix(target, ".star") || fileExists(target) {
		warnIgnoredFlags(target, fs.Args()[1:], stderr)
		topo, partial, err = recipeTopology(target, *name, fs.Args()[1:], *libs, stderr)
	} else {
		if fs.NArg() > 1 {
			fmt.Fprintf(stderr, "nsrun graph: arguments after the lab %q: only a recipe takes them\n", target)
			return engine.ExitUsage
		}
		if code, ok := inKeptSandbox(labArg(fs, target), append([]string{"graph"}, args...), stdout, stderr); ok {
			return code
		}
		topo, err = labTopology(target)
	}
	if err != nil {
		fmt.Fprintf(stderr, "nsrun graph: %v\n", err)
		return engine.ExitUsage
	}
	g := graph.Build(topo)
	g.Partial = partial
	if err := g.Write(stdout, *format); err != nil {
		fmt.Fprintf(stderr, "nsrun graph: %v\n", err)
		return engine.ExitUsage
	}
	if partial != "" {
		fmt.Fprintf(stderr, "nsrun graph: the drawing is partial: %s\n", partial)
		return engine.ExitPartial
	}
	return engine.ExitOK
}

// recipeTopology plans the recipe and returns the topology it builds. A
// recipe that stops on a made-up answer of the network (see cmdPlan) is
// drawn as far as it got, and partial says where it stopped.
func recipeTopology(recipe, lab string, argv, libs []string, stderr io.Writer) (t graph.Topology, partial string, err error) {
	rec, rt, err := engine.Plan(context.Background(), engine.RunOptions{
		Recipe: recipe, Lab: lab, Args: argv, Interp: newInterp(argv, libs),
	})
	if err != nil && !rec.Observed {
		fmt.Fprintln(stderr, engine.Backtrace(err))
		return graph.Topology{}, "", fmt.Errorf("the recipe failed while planning")
	}
	if err != nil {
		msg, pos := engine.ErrorAt(err)
		partial = fmt.Sprintf("the plan ends at %s (%s)", pos, msg)
	}
	if t, err = graph.FromRecorder(rec); err == nil {
		t.Place(rt.Journal.Steps())
	}
	return t, partial, err
}

// labTopology reads the lab's journal.
func labTopology(name string) (graph.Topology, error) {
	lab, err := store.Open(store.StateDir, name)
	if err != nil {
		return graph.Topology{}, err
	}
	steps, err := lab.Steps()
	if err != nil {
		return graph.Topology{}, err
	}
	return graph.FromSteps(steps), nil
}
