package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/fault"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/store"
	"github.com/nsrun/nsrun/runtime/words"
)

// ApplyOptions say how to apply a recipe to a lab that is up.
type ApplyOptions struct {
	RunOptions
	DryRun bool
	Diff   io.Writer // where a dry run prints the difference
	// Removals are the builtins the removals call besides the recipe's
	// (see builtins.Removals).
	Removals starlark.StringDict
}

// A Diff is what an apply changes in a lab: the steps of the lab's that go
// (by index in its journal) and those of the recipe's plan that it makes
// (by index in the plan), the others being kept as they are.
type Diff struct {
	Lab, Plan   []journal.Step
	Gone, Added []int
	// Removals are the calls that remove what goes, in order (see
	// removals).
	Removals []string
}

// diff matches the plan's steps with the lab's by key (see model.Key), in
// order: a plan's step with no match is added, a live step of the lab's
// with none goes. st is the lab's model (model.LiveState of lab), only
// read.
func diff(lab, plan []journal.Step, labKeys, planKeys []string, live []bool, st *model.State) Diff {
	d := Diff{Lab: lab, Plan: plan}
	pool := map[string][]int{}
	for i, k := range labKeys {
		if k != "" {
			pool[k] = append(pool[k], i)
		}
	}
	kept := map[int]bool{}
	for i, k := range planKeys {
		if have := pool[k]; k != "" && len(have) > 0 {
			kept[have[0]], pool[k] = true, have[1:]
			continue
		}
		if plan[i].Kind != model.Revert {
			d.Added = append(d.Added, i)
		}
	}
	for i, s := range lab {
		// A lease the run no longer takes goes after it (see
		// Runtime.EndAdopt): the plan may not know the server's answer.
		if live[i] && !kept[i] && !model.IsLeased(s) {
			d.Gone = append(d.Gone, i)
		}
	}
	var linkGoes func(ns, name string) bool
	d.Removals, linkGoes = removals(lab, st, d.Gone)
	// A setting the plan no longer makes at all is put back as it was
	// before the lab first set it.
	planned := map[string]bool{}
	for _, s := range plan {
		planned[model.SettingOf(s)] = true
	}
	first := map[string]journal.Step{}
	var keys []string
	for _, i := range d.Gone {
		s := lab[i]
		switch s.Op {
		case journal.OpMTU, journal.OpUp, journal.OpSysctl, journal.OpShape:
		default:
			continue
		}
		if k := model.SettingOf(s); !planned[k] {
			if _, ok := first[k]; !ok {
				first[k] = s
				keys = append(keys, k)
			}
		}
	}
	var unsets []string
	for _, k := range keys {
		s := first[k]
		goes := slices.Contains(d.Removals, fmt.Sprintf("ns(%q).delete()", s.NS))
		if s.Op != journal.OpSysctl {
			_, made := st.MadeLink(s.NS, s.Name)
			goes = goes || !made && !st.HasNetns(s.NS) || linkGoes(s.NS, s.Name)
		}
		if !goes {
			unsets = append(unsets, fmt.Sprintf("unset(%q, %q, %q, %q)", s.Op, s.NS, s.Name, s.Old))
		}
	}
	d.Removals = append(unsets, d.Removals...)
	return d
}

// running is keys without those of the lab's processes that are not
// running (they ended, or crashed): the recipe's start of one is made again.
func running(steps []journal.Step, keys []string) []string {
	for i, s := range steps {
		if s.Op == journal.OpProc && !proc.Running(s.Pid, s.Start) {
			keys[i] = ""
		}
	}
	return keys
}

// past is the number of changes the plan asks for up to the last one the
// lab has, which the run adopts (see Runtime.InPast).
func past(labKeys, planKeys []string) int {
	pool := map[string]int{}
	for _, k := range labKeys {
		pool[k]++
	}
	n := 0
	for i, k := range planKeys {
		if k != "" && pool[k] > 0 {
			pool[k]--
			n = i + 1
		}
	}
	return n
}

// removals returns the calls that remove the lab's steps gone, as the
// recipe's builtins (and builtins.Removals) make them, each undoable:
// processes first, then the rest newest first, namespaces last. What goes
// with something removed (a link's addresses with it, what is in a
// namespace with it) is left to it. A setting the recipe no longer makes
// stays as it is; one it makes otherwise is made anew. st is the lab's
// model (model.Replay of lab, with intents), only read.
func removals(lab []journal.Step, st *model.State, gone []int) (calls []string, goes func(ns, name string) bool) {
	goneNS := map[string]bool{}
	goneLink := map[*model.Link]bool{}
	for _, i := range gone {
		switch s := lab[i]; s.Op {
		case journal.OpNetns:
			goneNS[s.Name] = true
		case journal.OpLink, journal.OpMove: // a link moved elsewhere is made again
			if l := st.Of[i]; l != nil && l.Removed < 0 {
				goneLink[l] = true
				if l.Peer != nil { // a veth goes whole
					goneLink[l.Peer] = true
				}
			}
		}
	}
	dies := func(l *model.Link) bool {
		return goneNS[l.At.NS] || l.Peer != nil && goneNS[l.Peer.At.NS]
	}
	deleted := maps.Clone(goneLink)
	goes = func(ns, name string) bool { // a link of the lab's
		l, made := st.MadeLink(ns, name)
		return made && (deleted[l] || dies(l))
	}
	var procs, rest, netns []string
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	for _, i := range slices.Backward(gone) {
		s := lab[i]
		switch s.Op {
		case journal.OpProc:
			if proc.Running(s.Pid, s.Start) {
				procs = append(procs, fmt.Sprintf("stop_process(%d)", s.Pid))
			}
		case journal.OpNetns:
			netns = append(netns, fmt.Sprintf("ns(%s).delete()", q(s.Name)))
		case journal.OpLink, journal.OpMove:
			l := st.Of[i]
			if l == nil || !goneLink[l] || dies(l) {
				continue
			}
			delete(goneLink, l) // once
			if l.Peer != nil {
				delete(goneLink, l.Peer)
			}
			rest = append(rest, fmt.Sprintf("link(%s, %s).delete()", q(kernel.NSArg(l.At.NS)), q(l.At.Name)))
		case journal.OpAddr:
			l := st.Of[i]
			if l == nil || l.Removed >= 0 || goneLink[l] || dies(l) || l.At != (model.LinkKey{NS: s.NS, Name: s.Name}) || !slices.Contains(l.Addrs, s.Addr) {
				continue
			}
			rest = append(rest, fmt.Sprintf("link(%s, %s).addr_del(%s)", q(kernel.NSArg(s.NS)), q(s.Name), q(s.Addr.String())))
		case journal.OpRoute:
			if s.Route == nil || goneNS[s.NS] || !slices.ContainsFunc(st.Routes(s.NS), func(r kernel.Route) bool { return r.Key() == s.Route.Key() }) {
				continue
			}
			if l := st.Of[i]; l != nil && (goneLink[l] || l.Removed >= 0) {
				continue
			}
			table := ""
			if s.Route.Table != 0 {
				table = fmt.Sprintf(", table=%d", s.Route.Table)
			}
			rest = append(rest, fmt.Sprintf("ns(%s).route_del(%s, metric=%d%s)", q(kernel.NSArg(s.NS)), q(routeDst(*s.Route)), s.Route.Key().Metric, table))
		case journal.OpFDB:
			l := st.Of[i]
			e, err := kernel.ParseFDBEntry(s.New)
			if l == nil || err != nil || l.Removed >= 0 || goneLink[l] || dies(l) {
				continue
			}
			args := q(e.MAC.String())
			if e.Dst.IsValid() {
				args += fmt.Sprintf(", dst=%q", e.Dst)
			}
			if e.Master {
				args += ", master=True"
			}
			rest = append(rest, fmt.Sprintf("link(%s, %s).fdb_del(%s)", q(kernel.NSArg(s.NS)), q(s.Name), args))
		case "rule":
			if s.Rule != nil && !goneNS[s.NS] {
				rest = append(rest, fmt.Sprintf("ns(%s).rule_del(%s)", q(s.NS), ruleArgs(*s.Rule)))
			}
		case "nftrule":
			if !goneNS[s.NS] {
				rest = append(rest, fmt.Sprintf("nat_rule_del(%s, %s, %s, %s)", q(s.NS), q(s.Name), q(s.Kind), q(s.Alias)))
			}
		case "nftable":
			if !goneNS[s.NS] {
				rest = append(rest, fmt.Sprintf("nat_table_del(%s, %s, %s)", q(s.NS), q(s.Name), q(s.Kind)))
			}
		}
	}
	return slices.Concat(procs, rest, netns), goes
}

// ruleArgs are the arguments of ns.rule_del() that name rule r.
func ruleArgs(r kernel.Rule) string {
	args := []string{fmt.Sprintf("table=%d", r.Table)}
	if r.Src.IsValid() {
		args = append(args, fmt.Sprintf("src=%q", r.Src))
	}
	if r.Dst.IsValid() {
		args = append(args, fmt.Sprintf("dst=%q", r.Dst))
	}
	if r.IIF != "" {
		args = append(args, fmt.Sprintf("iif=%q", r.IIF))
	}
	if r.OIF != "" {
		args = append(args, fmt.Sprintf("oif=%q", r.OIF))
	}
	if r.Priority != 0 {
		args = append(args, fmt.Sprintf("priority=%d", r.Priority))
	}
	return strings.Join(args, ", ")
}

// routeDst is how route_del names a route's destination.
func routeDst(r kernel.Route) string {
	if r.Dst.IsValid() && r.Dst.Bits() > 0 {
		return r.Dst.String()
	}
	if r.Family == 6 || r.Dst.IsValid() && r.Dst.Addr().Is6() || r.Via.IsValid() && r.Via.Is6() {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0).String()
	}
	return "default"
}

// Print writes the diff as lines: "-" for what goes (the call that removes
// it), "~" for a setting, route or address the recipe makes otherwise, "+"
// for what is made (with the recipe's position), then a count.
func (d Diff) Print(w io.Writer) {
	key := func(s journal.Step) string {
		switch {
		case model.IsSetting(s.Op):
			return model.SettingOf(s)
		case s.Op == journal.OpRoute:
			if s.Route != nil {
				return fmt.Sprintf("route|%s|%v", s.NS, s.Route.Key())
			}
		}
		return ""
	}
	was := map[string]journal.Step{}
	for _, i := range d.Gone {
		if k := key(d.Lab[i]); k != "" {
			was[k] = d.Lab[i]
		}
	}
	changed := map[string]bool{}
	var plus, tilde []string
	for _, i := range d.Added {
		s := d.Plan[i]
		if old, ok := was[key(s)]; ok && key(s) != "" {
			changed[key(s)] = true
			tilde = append(tilde, fmt.Sprintf("~ %s: %s -> %s (%s)", s, value(old), value(s), s.Pos))
			continue
		}
		plus = append(plus, fmt.Sprintf("+ %s (%s)", s, s.Pos))
	}
	for _, r := range d.Removals {
		fmt.Fprintf(w, "- %s\n", r)
	}
	for _, l := range slices.Concat(tilde, plus) {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintf(w, "%s to remove, %s to change, %s to add\n", words.Plural(len(d.Removals), "object"), words.Plural(len(tilde), "setting"), words.Plural(len(plus), "change"))
}

// value is what a setting or route step sets, for a "~" line.
func value(s journal.Step) string {
	if s.Op == journal.OpRoute && s.Route != nil {
		return s.Route.String()
	}
	if s.Op == journal.OpShape && s.New == "" {
		return "none"
	}
	return s.New
}

// Apply changes the lab that is up to what the recipe makes, as a
// transaction: it plans the recipe, removes what the lab has that the plan
// does not (each removal journaled and undoable), then runs the recipe on
// the lab, where each change the lab has already is taken as made (see
// Runtime.Adopt) and the others are made. Unchanged objects are not
// touched. If anything fails, the recipe's checks included, every change
// since the apply began is undone: the lab is as it was, and up. A lab
// that is not up is run (see Run). A dry run prints the difference and
// changes nothing.
func Apply(ctx context.Context, o ApplyOptions) store.Result {
	o.defaultLab()
	r := store.Result{Lab: o.Lab, Stage: StageInput}
	if r.Err = store.ValidName(o.Lab); r.Err != nil {
		return r
	}
	src, err := o.Interp.ReadRecipe(ctx, o.Recipe)
	if err != nil {
		r.Err = err
		return r
	}
	r.Stage = StageSyntax
	if _, _, err := starlark.SourceProgramOptions(FileOptions, o.Recipe, src, o.Interp.Predeclared.Has); err != nil {
		r.Err = err
		return r
	}
	if !o.DryRun {
		rep := reporter(o.Reporter)
		for _, rec := range store.Recover(o.StateDir, o.Kernel) {
			rep.Recovered(rec)
		}
	}
	open := store.Open
	if o.DryRun { // it only reads
		open = store.Peek
	}
	lab, err := open(o.StateDir, o.Lab)
	if err != nil {
		if o.DryRun {
			r.Err = fmt.Errorf("%w: apply would run the recipe (see `nsrun plan`)", err)
			return r
		}
		return Run(ctx, o.RunOptions)
	}
	if !o.DryRun {
		if err := lab.TryLock(); err != nil {
			r.Err = err
			return r
		}
		defer lab.Unlock()
	}
	if lab.Info.State != store.LabUp {
		r.Err = fmt.Errorf("lab %q is %s: apply changes only a lab that is up (see `nsrun down`)", o.Lab, lab.Info.State)
		return r
	}
	r.Pid, r.State = lab.Info.Pid, lab.Info.State
	if o.Timeout > 0 { // the plan, the removals and the run
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.Timeout, fmt.Errorf("timed out after %s (--timeout)", o.Timeout))
		defer cancel()
	}
	r.Stage = StagePlan
	// The lab's journal is read, and its model made, while the recipe is
	// planned: neither needs the other, and a big lab's journal takes about
	// as long to read as its recipe to plan.
	labRead := make(chan labState, 1)
	go func() { labRead <- readLab(lab.JournalPath(), o.DryRun) }()
	planOpts := o.RunOptions
	planOpts.Stdout = io.Discard // the recipe's output is the apply's, not its plan's
	_, plan, err := planRecipe(ctx, planOpts, true)
	o.Interp.Reset()
	now := <-labRead
	if now.j != nil {
		defer now.j.Close()
	}
	if aerr := notAcross("apply", plan); aerr != nil { // what it planned declares machines
		err = aerr
	}
	if err != nil {
		r.Err = err
		return r
	}
	if now.err != nil {
		r.Err = fmt.Errorf("lab %q: reading its journal: %w", o.Lab, now.err)
		return r
	}
	if r.Err = oneMachine(o.Lab, "apply", now.steps); r.Err != nil {
		return r
	}
	j, steps, labLive, labKeys, labModel := now.j, now.steps, now.live, now.keys, now.st
	planSteps := plan.Journal.Steps()
	planKeys := model.Keys(planSteps, model.Live(planSteps))
	d := diff(steps, planSteps, labKeys, planKeys, labLive, labModel)
	if o.DryRun {
		d.Print(o.Diff)
		return r
	}
	r.Stage = StageClaim
	fresh, err := claimMore(o.StateDir, lab, planClaims(plan))
	if err != nil {
		r.Err = err
		return r
	}
	mark := j.Len()
	lab.Info.Mark, lab.Info.Applied = mark, fresh
	if err := lab.SetState(store.LabApplying); err != nil {
		store.Release(o.StateDir, o.Lab, fresh)
		r.Err = fmt.Errorf("recording the lab: %w", err)
		return r
	}
	claims := store.NewClaimer(o.Kernel, o.StateDir, lab)
	rt := New(o.Lab, claims, j)
	rt.ID, rt.Dir, rt.Argv, rt.Ctx, rt.Prefix = lab.Info.ID, lab.Dir, o.Args, ctx, o.Prefix
	rt.Faults = o.Faults
	if rt.Faults == nil {
		rt.Faults = fault.Process
	}
	rec, _ := kernel.As[*kernel.Recorder](plan.k)
	rt.Planned = !rec.Observed
	if o.Verbose {
		rt.Log = o.Stderr
	}
	if len(d.Removals) > 0 { // they are of the lab's model (Adopt makes the run's)
		rt.ownJournal()
	}
	out := o.Stdout
	if o.Quiet {
		out = io.Discard
	}
	r.Stage = StageRun
	err = o.remove(ctx, rt, d.Removals, out)
	if err == nil {
		// What the lab had before the apply may be taken, but what the
		// removals took.
		now, nowLive := steps, labLive
		if j.Len() > mark { // the removals made changes
			// The lab's steps, and the removals': the lab's model is
			// extended with them (diff is done with it).
			now = j.Steps()
			nowLive = model.MoreLive(now, slices.Clone(labLive), labModel)
		}
		keys := make([]string, len(now))
		for i := range mark {
			if !labLive[i] || nowLive[i] {
				keys[i] = labKeys[i]
			}
		}
		rt.Adopt(now, keys, planKeys, past(keys, planKeys))
		if rt.Log == nil {
			rt.Pipeline()
		}
		run := o.RunOptions
		run.Interp = pastInterp(o.Interp, rt)
		_, err = run.exec(ctx, rt, out)
		o.Interp.Reset()
		// What the lab has that the run did not take (a lease the recipe
		// no longer asks for, or another server's answer) goes too.
		if serr := rt.Sync(); err == nil { // what is queued is made first
			err = serr
		}
		if left := rt.EndAdopt(); err == nil && len(left) > 0 {
			now := j.Steps()
			calls, _ := removals(now, model.Replay(now, true), left)
			err = o.remove(ctx, rt, calls, out)
		}
	}
	err = rt.EndPipeline(err)
	if cause := context.Cause(ctx); err == nil && cause != nil {
		err = cause // a transaction: stopped before it is recorded done, it is undone
	}
	if ferr := j.Flush(); ferr != nil && err == nil {
		err = errJournal(ferr)
	}
	if err == nil {
		err = pinned(o.Kernel, j.Steps())
	}
	reporter(o.Reporter).Ended(err)
	defer rt.Close()
	r.Made, r.Err = j.Since(mark), err
	fresh = lab.Info.Applied // and those the run claimed as it went
	lab.Info.Mark, lab.Info.Applied = 0, nil
	if err == nil {
		lab.Settle(&r, store.LabUp)
		return r
	}
	r.Undone, r.Failed = rt.Rollback(mark)
	r.Spared, r.Left = rt.Spared, j.Since(mark)
	if err := claims.Drop(fresh); err != nil { // kept, then, until down
		r.Spared = append(r.Spared, fmt.Errorf("releasing the apply's names: %w", err))
	}
	if len(r.Failed) > 0 {
		lab.Settle(&r, store.LabIncomplete)
	} else {
		lab.Settle(&r, store.LabUp)
	}
	return r
}

// labState is a lab's journal as an apply finds it: its steps, which of
// them are live, and their keys (see running).
type labState struct {
	j     *journal.Journal // nil for a dry run, which only reads
	steps []journal.Step
	live  []bool
	st    *model.State // the model of steps (see model.LiveState)
	keys  []string
	err   error
}

// readLab reads the journal at path, reopened to be added to unless
// dryRun, and models it.
func readLab(path string, dryRun bool) (l labState) {
	if dryRun {
		l.steps, l.err = journal.Read(path)
	} else if l.j, l.err = journal.Reopen(path); l.err == nil {
		l.steps = l.j.Steps()
	}
	if l.err != nil {
		return l
	}
	l.live, l.st = model.LiveState(l.steps)
	l.keys = running(l.steps, model.Keys(l.steps, l.live))
	return l
}

// claimMore claims, for lab, the names of claims it does not hold yet,
// all or none, and returns them.
func claimMore(stateDir string, lab *store.Lab, claims []string) ([]string, error) {
	held := make(map[string]bool, len(lab.Info.Claims))
	for _, c := range lab.Info.Claims {
		held[c] = true
	}
	var fresh []string
	for _, c := range claims {
		if !held[c] {
			fresh = append(fresh, c)
		}
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	unlock, err := store.LockState(stateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := store.Claim(stateDir, lab.Info.Name, fresh); err != nil {
		return nil, err
	}
	lab.Info.Claims = append(lab.Info.Claims, fresh...)
	return fresh, nil
}

// remove makes the removals of an apply, each a call of the builtins.
func (o *ApplyOptions) remove(ctx context.Context, rt *Runtime, calls []string, out io.Writer) error {
	if len(calls) == 0 {
		return nil
	}
	thread, done := o.thread(ctx, "apply", rt, out)
	predeclared := maps.Clone(o.Interp.Predeclared)
	maps.Copy(predeclared, o.Removals)
	_, err := starlark.ExecFileOptions(FileOptions, thread, "<apply>", strings.Join(calls, "\n")+"\n", predeclared)
	if derr := done(); derr != nil && err == nil {
		err = derr
	}
	var evalErr *starlark.EvalError
	if errors.As(err, &evalErr) {
		return fmt.Errorf("removing what the recipe no longer makes: %s", evalErr.Msg)
	}
	return err
}

// pastInterp is in with a fail() that, in the past of an apply (see
// Runtime.InPast), only notes: the check is of a moment the lab has
// passed.
func pastInterp(in *Interp, rt *Runtime) *Interp {
	p := &Interp{Predeclared: maps.Clone(in.Predeclared), Std: in.Std, Path: in.Path, sources: in.sources}
	fail := starlark.Universe["fail"]
	p.Predeclared["fail"] = starlark.NewBuiltin("fail", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if !rt.InPast() {
			return starlark.Call(thread, fail, args, kwargs)
		}
		return starlark.None, nil
	})
	return p
}
