package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/machines"
	"github.com/nsrun/nsrun/runtime/store"
	"github.com/nsrun/nsrun/runtime/view"
	"github.com/nsrun/nsrun/runtime/words"
)

func init() {
	register(
		command{"inspect", "LAB [--json]", "show a lab as the kernel has it now (links, addresses, routes, neighbours, processes)", cmdInspect},
		command{"check", "LAB", "report where a lab differs from what it recorded (exit 1 on drift)", cmdCheck},
	)
}

// openLab runs recovery, as every command does first, and opens lab name's
// record; the caller closes k.
func openLab(name string, stderr io.Writer) (*store.Lab, *kernel.Netlink, error) {
	k := kernel.NewNetlink(store.NetnsDir)
	recoverDead(k, stderr)
	lab, err := store.Open(store.StateDir, name)
	if err != nil {
		k.Close()
		return nil, nil, err
	}
	return lab, k, nil
}

// theLab opens the one lab a command's arguments name, or runs the
// command in the kept sandbox that holds it (done, with its exit code).
func theLab(fs *pflag.FlagSet, args []string, stdout, stderr io.Writer) (*store.Lab, *kernel.Netlink, int, bool) {
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "nsrun %s: name one lab (see `nsrun ls`)\n", fs.Name())
		return nil, nil, engine.ExitUsage, true
	}
	if code, ok := inKeptSandbox(labArg(fs, fs.Arg(0)), append([]string{fs.Name()}, args...), stdout, stderr); ok {
		return nil, nil, code, true
	}
	lab, k, err := openLab(fs.Arg(0), stderr)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return nil, nil, engine.ExitUsage, true
	}
	return lab, k, 0, false
}

// Equivalent to: ip -n $ns -d link; ip -n $ns addr; ip -n $ns route; ip -n $ns neigh, for
// each namespace of the lab, and its processes from /proc.
func cmdInspect(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("inspect", "[--json] [--sandbox-id ID] LAB", stderr)
	asJSON := fs.Bool("json", false, "print JSON (see the README for its shape)")
	sandboxIDFlag(fs)
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	lab, k, code, done := theLab(fs, args, stdout, stderr)
	if done {
		return code
	}
	defer k.Close()
	v, err := view.Inspect(lab, k)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return engine.ExitFailed
	}
	inspectParts(lab, &v)
	if *asJSON {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return engine.ExitOK
	}
	printView(stdout, v)
	return engine.ExitOK
}

// printView prints the lab as a tree of namespaces, each with tables of its
// links, routes and neighbours, then the lab's processes.
func printView(w io.Writer, v view.LabView) {
	fmt.Fprintf(w, "lab %q (%s, id %s, recipe %s)\n", v.Lab, v.State, v.ID, v.Recipe)
	for _, ns := range v.Namespaces {
		fmt.Fprintf(w, "\nnetns %s", ns.Name)
		if ns.Machine != "" {
			fmt.Fprintf(w, " (machine %s)", ns.Machine)
		}
		if ns.Away {
			fmt.Fprintf(w, ": made and read there (nsrun inspect %s on %s)", v.Lab, ns.Machine)
			if ns.Error != "" {
				fmt.Fprintf(w, "; not read from here: %s", ns.Error)
			}
			fmt.Fprintln(w)
			continue
		}
		if ns.Error != "" {
			fmt.Fprintf(w, ": %s\n", ns.Error)
			continue
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  links:")
		for _, l := range ns.Links {
			state, master := "DOWN", ""
			if l.Up {
				state = "UP"
			}
			if l.Master != "" {
				master = "master " + l.Master
			}
			addrs := strings.Join(l.Addrs, " ")
			if l.Shape != "" {
				addrs = strings.TrimSpace(addrs + " [" + l.Shape + "]")
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\tmtu %d\t%s\t%s\t%s\n", l.Name, l.Kind, l.MAC, l.MTU, state, master, addrs)
		}
		tw.Flush()
		fmt.Fprintln(w, "  routes:")
		for _, r := range ns.Routes {
			fmt.Fprintf(w, "    %s\n", routeLine(r))
		}
		if len(ns.Rules) > 0 {
			fmt.Fprintln(w, "  rules:")
			for _, r := range ns.Rules {
				fmt.Fprintf(w, "    %s\n", r)
			}
		}
		if len(ns.Neighbors) > 0 {
			tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  neighbours:")
			for _, n := range ns.Neighbors {
				mac := n.MAC
				if mac == "" {
					mac = "-"
				}
				fmt.Fprintf(tw, "    %s\tdev %s\t%s\t%s\n", n.IP, n.Dev, mac, n.State)
			}
			tw.Flush()
		}
	}
	fmt.Fprintln(w, "\nprocesses:")
	if len(v.Processes) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  PID\tNETNS\tNAME\tCOMMAND")
		for _, p := range v.Processes {
			name := p.Name
			if name == "" {
				name = "-"
			}
			netns := p.Netns
			if p.Machine != "" {
				netns += " (machine " + p.Machine + ")"
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", p.Pid, netns, name, p.Command)
		}
		tw.Flush()
	}
	if len(v.Leases) > 0 {
		fmt.Fprintln(w, "\nDHCP leases:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  LINK\tADDR\tSERVER\tLEASE\tRENEWALS\tEXPIRES")
		for _, l := range v.Leases {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%ds\t%d\t%s\n", l.Link, l.Addr, l.Server, l.LeaseS, l.Renewals, l.Expires.Format("15:04:05"))
		}
		tw.Flush()
	}
}

// routeLine renders a route as `ip route` does.
func routeLine(r view.RouteView) string {
	s := r.Dst
	if r.Type != "unicast" {
		s = r.Type + " " + s
	}
	if r.Via != "" {
		s += " via " + r.Via
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Table != 0 {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	s += " proto " + r.Proto
	if r.Src != "" {
		s += " src " + r.Src
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

// Equivalent to comparing, by hand, the lab's journal with ip netns list,
// ip -n $ns link, ip -n $ns addr and ip -n $ns route.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "[--sandbox-id ID] LAB", stderr)
	sandboxIDFlag(fs)
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	lab, k, code, done := theLab(fs, args, stdout, stderr)
	if done {
		return code
	}
	defer k.Close()
	drift, n, err := view.Check(lab, k)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return engine.ExitFailed
	}
	for _, d := range drift {
		fmt.Fprintln(stdout, d)
	}
	partsOK := checkParts(lab, stdout, stderr)
	if len(drift) > 0 {
		fmt.Fprintf(stderr, "nsrun: lab %q has drifted from its journal: %s (checked %s)\n", lab.Info.Name, words.Plural(len(drift), "difference"), n)
		return engine.ExitFailed
	}
	fmt.Fprintf(stdout, "nsrun: lab %q is as it recorded (checked %s)\n", lab.Info.Name, n)
	if !partsOK {
		return engine.ExitFailed
	}
	return engine.ExitOK
}

// inspectParts reads, on the coordinator of a lab across machines, each
// other machine's part there (its nsrun inspect --json) and merges it into
// v; a machine that cannot be read leaves its namespaces unread, each
// saying why.
func inspectParts(lab *store.Lab, v *view.LabView) {
	steps, err := lab.Steps()
	if err != nil {
		return
	}
	for _, s := range steps {
		if s.Op != journal.OpPart || s.Machine == nil || s.Away { // the coordinator's record of a part
			continue
		}
		var part view.LabView
		cmd := machines.Remote(*s.Machine, false, "inspect", "--json", s.New)
		var errb strings.Builder
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err == nil {
			err = json.Unmarshal(out, &part)
		}
		if err != nil {
			why := strings.TrimSpace(errb.String())
			if why == "" {
				why = err.Error()
			}
			for i := range v.Namespaces {
				if ns := &v.Namespaces[i]; ns.Away && ns.Machine == s.Machine.Name {
					ns.Error = why
				}
			}
			continue
		}
		v.Merge(s.Machine.Name, part)
	}
}

// checkParts checks each part of a lab across machines on its machine,
// with its nsrun (nsrun check there), printing what each says with the
// machine's name; ok is false if one drifted or could not be checked.
func checkParts(lab *store.Lab, stdout, stderr io.Writer) (ok bool) {
	steps, err := lab.Steps()
	if err != nil {
		return true // the local check has said it
	}
	ok = true
	for _, s := range steps {
		if s.Op != journal.OpPart || s.Machine == nil || s.Away { // the coordinator's record of a part, not a part's copy of it
			continue
		}
		out, err := machines.Remote(*s.Machine, false, "check", s.New).CombinedOutput()
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				fmt.Fprintf(stdout, "machine %s: %s\n", s.Machine.Name, l)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "nsrun: lab %q: machine %q: its part did not pass (%v)\n", lab.Info.Name, s.Machine.Name, err)
			ok = false
		}
	}
	return ok
}
