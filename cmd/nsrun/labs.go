package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/store"
)

func cmdLs(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("ls", "[--json]", stderr)
	rowsOnly := fs.Bool("rows", false, "print the rows only, tab-separated (for a kept sandbox's listing)")
	fs.MarkHidden("rows")
	asJSON := fs.Bool("json", false, "print the labs as a JSON array (see the README)")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	k := kernel.NewNetlink(store.NetnsDir)
	defer k.Close()
	recoverDead(k, stderr)
	labs, err := store.List(store.StateDir)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return engine.ExitFailed
	}
	if *asJSON && !*rowsOnly {
		entries := []labJSON{}
		for _, l := range labs {
			entries = append(entries, lsEntry(l, ""))
		}
		printJSON(stdout, append(entries, keptSandboxLabs()...))
		return engine.ExitOK
	}
	var rows []string
	for _, l := range labs {
		rows = append(rows, fmt.Sprintf("%s\t%s\t%d\t%s\t%s", l.Name, l.State, l.Steps, l.Started.Local().Format(time.DateTime), l.Recipe))
	}
	if *rowsOnly {
		for _, r := range rows {
			fmt.Fprintln(stdout, r)
		}
		return engine.ExitOK
	}
	sandboxed := keptSandboxRows()
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	header := "LAB\tSTATE\tCHANGES\tSTARTED\tRECIPE"
	if len(sandboxed) > 0 {
		header += "\tWHERE"
		for i := range rows {
			rows[i] += "\tmachine"
		}
	}
	if slices.ContainsFunc(labs, func(l store.Info) bool { return l.Machines != nil }) {
		header += "\tMACHINES"
		for i, l := range labs {
			rows[i] += "\t" + machinesCell(l)
		}
	}
	fmt.Fprintln(w, header)
	for _, r := range append(rows, sandboxed...) {
		fmt.Fprintln(w, r)
	}
	w.Flush()
	return engine.ExitOK
}

// machinesCell is a lab's MACHINES in `nsrun ls`: "-" for a lab on one
// machine; for one across machines, its machines, and which this is the
// part of on any but the coordinator ("m2 of local,m1,m2").
func machinesCell(l store.Info) string {
	if l.Machines == nil {
		return "-"
	}
	all := strings.Join(l.Machines, ",")
	if l.Machine == "" || l.Machine == l.Machines[0] {
		return all
	}
	return l.Machine + " of " + all
}

func cmdDown(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("down", "[-q] [--json] [--sandbox-id ID] LAB...", stderr)
	quiet := fs.BoolP("quiet", "q", false, "print only errors")
	sandboxID := sandboxIDFlag(fs)
	asJSON := fs.Bool("json", false, "print what was done to each lab as a JSON array on stdout (see the README)")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "nsrun down: name the labs to remove (see `nsrun ls`)")
		return engine.ExitUsage
	}
	// A stop signal (Ctrl-C, a closed terminal) never cuts a lab's undo
	// short: it stops down before the next lab.
	sigs := catch()
	defer sigs.release()
	k := kernel.NewNetlink(store.NetnsDir)
	defer k.Close()
	printRecovered(stderr, store.Recover(store.StateDir, k)...)
	code := engine.ExitOK
	results := []resultJSON{}
	for i, name := range fs.Args() {
		if err := sigs.signalled(); err != nil {
			fmt.Fprintf(stderr, "nsrun down: %v; left up: %s\n", err, strings.Join(fs.Args()[i:], " "))
			code = max(code, engine.ExitFailed)
			break
		}
		name = addressed(*sandboxID, name)
		s, lab, boxed, err := keptSandboxWith(name)
		if boxed {
			c, rs := downInSandbox(s, lab, *quiet, *asJSON, stdout, stderr)
			code, results = max(code, c), append(results, rs...)
			continue
		}
		r := store.Result{Lab: name, Err: err}
		if err == nil {
			r = downLab(k, name)
		}
		printDown(stdout, stderr, r, *quiet || *asJSON)
		code, results = max(code, codeOf(r)), append(results, undoJSON(r))
	}
	if *asJSON {
		printJSON(stdout, results)
	}
	return code
}

// downLab takes lab name down, if it can have its lock.
func downLab(k kernel.Kernel, name string) store.Result {
	lab, err := store.Open(store.StateDir, name)
	if err == nil {
		err = lab.TryLock()
	}
	if err != nil {
		r := store.Result{Lab: name, Err: err}
		if lab != nil {
			r.State = lab.Info.State // as it stays
		}
		return r
	}
	defer lab.Unlock()
	return lab.Down(k)
}

func cmdRecover(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("recover", "", stderr)
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	k := kernel.NewNetlink(store.NetnsDir)
	defer k.Close()
	var recovered []store.Result
	undoing(func() { recovered = store.Recover(store.StateDir, k) }) // to its end
	printRecovered(stdout, recovered...)
	if len(failures(recovered)) > 0 {
		return engine.ExitIncomplete
	}
	return engine.ExitOK
}

func cmdGC(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("gc", "[--yes]", stderr)
	yes := fs.Bool("yes", false, "remove what is found (without it, only list)")
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	k := kernel.NewNetlink(store.NetnsDir)
	defer k.Close()
	recoverDead(k, stderr)
	orphans, err := store.FindOrphans(store.StateDir, k)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return engine.ExitFailed
	}
	if len(orphans) == 0 {
		fmt.Fprintln(stdout, "nsrun: nothing tagged as nsrun's is without its lab")
		return engine.ExitOK
	}
	code := engine.ExitOK
	sigs := catch() // an object's removal is not cut short
	defer sigs.release()
	for _, o := range orphans {
		if !*yes {
			fmt.Fprintf(stdout, "%s\n", o)
			continue
		}
		if err := sigs.signalled(); err != nil {
			fmt.Fprintf(stderr, "nsrun gc: %v\n", err)
			return max(code, engine.ExitFailed)
		}
		if err := o.Remove(k); err != nil {
			fmt.Fprintf(stderr, "nsrun: %s: %v\n", o, err)
			code = engine.ExitIncomplete
			continue
		}
		fmt.Fprintf(stdout, "removed %s\n", o)
	}
	if !*yes {
		fmt.Fprintf(stdout, "nsrun: %d objects without a lab; `nsrun gc --yes` removes them\n", len(orphans))
	}
	return code
}
