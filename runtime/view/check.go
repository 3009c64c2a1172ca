package view

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/store"
	"github.com/nsrun/nsrun/runtime/words"
)

// A Drift is a difference between what a lab recorded and what the kernel
// has now: `address 172.16.1.1/24 on "ns-veth1" in netns "ns1": missing`.
type Drift struct {
	Object  string `json:"object"`  // as its journal step names it
	Problem string `json:"problem"` // "missing", `carries tag "x", not "nsrun:lab"`, ...
}

func (d Drift) String() string { return d.Object + ": " + d.Problem }

// CheckCounts says how many objects of each kind Check looked at.
type CheckCounts struct {
	Netns, Links, Addrs, Routes, Procs int
	Rules                              int `json:",omitempty"`
}

func (c CheckCounts) String() string {
	s := fmt.Sprintf("%s, %s, %s, %s, %s", words.Plural(c.Netns, "namespace"), words.Plural(c.Links, "link"),
		words.Plural(c.Addrs, "address"), words.Plural(c.Routes, "route"), words.Plural(c.Procs, "process"))
	if c.Rules > 0 {
		s += ", " + words.Plural(c.Rules, "rule")
	}
	return s
}

// Check compares the lab's journal with the kernel: each namespace it
// created still exists, is the same one (inode) and carries the lab's tag;
// each link is where its journal says (following moves) with the lab's tag;
// each address is on its link; each route is in its table; each shaping is
// on its link, and each policy rule in its namespace; each background
// process is running. What lives in a namespace that is gone is not listed
// again. Steps whose outcome is unknown (intents of a run that died) and the
// settings of links (up, master, MTU) are not checked.
//
// Equivalent to: ip netns list; ip -n $ns link show $dev; ip -n $ns addr show
// dev $dev; ip -n $ns route show proto 78; kill -0 $pid.
func Check(l *store.Lab, k kernel.View) ([]Drift, CheckCounts, error) {
	st, steps, err := l.State()
	if err != nil {
		return nil, CheckCounts{}, err
	}
	// In a lab across machines, each machine checks its own part.
	if slices.ContainsFunc(steps, func(s journal.Step) bool { return s.Away }) {
		steps = slices.DeleteFunc(slices.Clone(steps), func(s journal.Step) bool { return s.Away })
		st = model.Replay(steps, false)
	}
	var drift []Drift
	var n CheckCounts
	report := func(object, format string, args ...any) {
		drift = append(drift, Drift{object, fmt.Sprintf(format, args...)})
	}
	gone := map[string]bool{} // namespaces that are missing or not the lab's
	missing := func(ns string) bool { return ns != kernel.Host && gone[ns] }

	removed := map[string]int{} // namespaces the lab removed: the index of the last removal
	for i, s := range steps {
		if s.State != journal.StateIntent && s.Op == journal.OpNetnsDel {
			removed[s.Name] = i
		}
	}
	// stale reports whether step i was in namespace ns before the lab
	// removed it: it went with it.
	stale := func(i int, ns string) bool { del, ok := removed[ns]; return ok && ns != kernel.Host && i < del }
	stopped := map[[2]uint64]bool{} // processes the recipe stopped, by pid and start
	for i, s := range steps {
		if s.Op == journal.OpStop {
			stopped[[2]uint64{uint64(s.Pid), s.Start}] = true
		}
		if s.Op == journal.OpNetns && stale(i, s.Name) {
			continue // removed on purpose: nothing of it is looked for
		}
		if s.State != journal.StateIntent && s.Op == journal.OpNetns {
			n.Netns++
			if p := checkNetns(k, s); p != "" {
				gone[s.Name] = true
				report(s.String(), "%s", p)
			}
		}
	}
	// Each link where it is at the end (following moves); moving a link
	// to another namespace dropped its addresses and the routes through it.
	linkGone := map[*model.Link]bool{}
	seen := map[*model.Link]kernel.LinkInfo{} // as the kernel has each link, read once
	for _, l := range st.Links {
		ns, name := l.At.NS, l.At.Name
		if l.Removed >= 0 { // on purpose: nothing of it is looked for
			linkGone[l] = true
			continue
		}
		if missing(ns) {
			linkGone[l] = true
			continue
		}
		n.Links++
		object := fmt.Sprintf("%s %q%s", l.Kind, name, inNetns(ns))
		li, err := k.LinkGet(ns, name)
		if err == nil {
			seen[l] = li
		}
		switch {
		case errors.Is(err, kernel.ErrNotFound):
			linkGone[l] = true
			report(object, "missing")
		case err != nil:
			report(object, "%v", err)
		case l.Untagged && li.Alias == "" && li.MAC != l.MAC:
			linkGone[l] = true
			report(object, "has MAC %s, not %s (not the lab's)", li.MAC, l.MAC)
		case !l.Untagged && li.Alias != l.Alias:
			linkGone[l] = true
			report(object, "carries tag %q, not %q (not the lab's)", li.Alias, l.Alias)
		}
	}
	// A link the lab set up or down is still so (unless it moved since:
	// a move takes a link down).
	admin := map[*model.Link]bool{}
	for i, s := range steps {
		if s.Op != journal.OpUp || s.New == "" || s.State == journal.StateIntent || stale(i, s.NS) {
			continue
		}
		if l, ok := st.Of[i]; ok && l.Moved < i {
			admin[l] = s.New == "up"
		} else if ok {
			delete(admin, l)
		}
	}
	for _, l := range slices.SortedFunc(maps.Keys(admin), func(a, b *model.Link) int {
		return cmp.Or(cmp.Compare(a.At.NS, b.At.NS), cmp.Compare(a.At.Name, b.At.Name))
	}) {
		if linkGone[l] || missing(l.At.NS) {
			continue
		}
		li, ok := seen[l]
		if !ok { // a link the lab did not make, such as a namespace's lo
			var err error
			if li, err = k.LinkGet(l.At.NS, l.At.Name); err != nil {
				continue
			}
		}
		if up := admin[l]; li.Up != up {
			state := map[bool]string{true: "up", false: "down"}
			report(fmt.Sprintf("link %q%s", l.At.Name, inNetns(l.At.NS)), "is %s (the lab set it %s)", state[li.Up], state[up])
		}
	}
	// A link the lab shaped is shaped so.
	shapes := map[string]map[string]kernel.Shape{}
	for _, l := range st.Links {
		if l.Shape == "" || l.Removed >= 0 || linkGone[l] || missing(l.At.NS) {
			continue
		}
		sl, ok := kernel.As[kernel.ShapeLister](k)
		if !ok {
			break
		}
		if _, read := shapes[l.At.NS]; !read {
			m, err := sl.Shapes(l.At.NS)
			if err != nil {
				report(fmt.Sprintf("shaping of %q%s", l.At.Name, inNetns(l.At.NS)), "%v", err)
				continue
			}
			shapes[l.At.NS] = m
		}
		want, err := kernel.ParseShape(l.Shape)
		if got := shapes[l.At.NS][l.At.Name]; err != nil || !got.Near(want) {
			text := got.String()
			if got.IsZero() {
				text = "none"
			}
			report(fmt.Sprintf("shaping of %q%s", l.At.Name, inNetns(l.At.NS)), "is %s, not %s", text, l.Shape)
		}
	}
	// Each rule the lab has is in its namespace's policy.
	live := model.Live(steps)
	rules := map[string][]kernel.Rule{}
	for i, s := range steps {
		if s.Op != journal.OpRule || s.Rule == nil || !live[i] || s.State == journal.StateIntent || missing(s.NS) || stale(i, s.NS) {
			continue
		}
		rl, ok := kernel.As[kernel.RuleLister](k)
		if !ok {
			break
		}
		n.Rules++
		if _, read := rules[s.NS]; !read {
			rs, err := rl.Rules(s.NS)
			if err != nil {
				report(s.String(), "%v", err)
				continue
			}
			rules[s.NS] = rs
		}
		if !slices.ContainsFunc(rules[s.NS], func(r kernel.Rule) bool {
			if s.Rule.Priority == 0 { // the kernel chose it
				r.Priority = 0
			}
			return r == *s.Rule
		}) {
			report(s.String(), "missing")
		}
	}
	// An address or a route the recipe removed (or replaced) since it
	// added it is not looked for: the last step about it says what it is.
	type addrKey struct {
		l *model.Link
		p netip.Prefix
	}
	type routeKey struct {
		ns  string
		key kernel.RouteKey
	}
	lastAddr, lastRoute := map[addrKey]int{}, map[routeKey]int{}
	for i, s := range steps {
		switch {
		case s.Op == journal.OpAddr || s.Op == journal.OpAddrDel:
			lastAddr[addrKey{st.Of[i], s.Addr}] = i
			if s.Was != nil { // the routes the kernel dropped with an address
				for _, e := range s.Was.Ends {
					for _, r := range e.Routes {
						lastRoute[routeKey{e.NS, r.Key()}] = i
					}
				}
			}
		case (s.Op == journal.OpRoute || s.Op == journal.OpRouteDel) && s.Route != nil:
			lastRoute[routeKey{s.NS, s.Route.Key()}] = i
		case (s.Op == journal.OpLinkDel || s.Op == journal.OpUp && s.New == "down") && s.Was != nil:
			// What went with the link, or the kernel dropped with it.
			for _, e := range s.Was.Ends {
				for _, r := range e.Routes {
					lastRoute[routeKey{e.NS, r.Key()}] = i
				}
				for _, a := range e.Addrs {
					lastAddr[addrKey{st.Of[i], a}] = i
				}
			}
		}
	}
	routes := map[string][]kernel.RouteInfo{}
	for i, s := range steps {
		if s.State == journal.StateIntent {
			continue
		}
		switch s.Op {
		case journal.OpAddr:
			l := st.Of[i]
			if l.Moved > i || missing(s.NS) || stale(i, s.NS) || linkGone[l] || lastAddr[addrKey{l, s.Addr}] != i {
				continue
			}
			n.Addrs++
			if p := checkAddr(k, s); p != "" {
				report(s.String(), "%s", p)
			}
		case journal.OpRoute:
			if s.Route == nil || missing(s.NS) || stale(i, s.NS) || lastRoute[routeKey{s.NS, s.Route.Key()}] != i {
				continue
			}
			if l, ok := st.Of[i]; ok && (l.Moved > i || l.Removed > i) {
				continue
			}
			n.Routes++
			if _, ok := routes[s.NS]; !ok {
				rs, err := k.Routes(s.NS)
				if err != nil {
					report(s.String(), "%v", err)
					continue
				}
				routes[s.NS] = rs
			}
			if !hasRoute(routes[s.NS], *s.Route) {
				report(s.String(), "missing")
			}
		case journal.OpProc:
			if stopped[[2]uint64{uint64(s.Pid), s.Start}] {
				continue // on purpose
			}
			n.Procs++
			if !proc.Running(s.Pid, s.Start) {
				report(s.String(), "not running")
			}
		}
	}
	return drift, n, nil
}

func inNetns(ns string) string {
	if ns == kernel.Host {
		return ""
	}
	return fmt.Sprintf(" in netns %q", ns)
}

// checkNetns says what is wrong with a namespace the lab created, or "".
func checkNetns(k kernel.View, s journal.Step) string {
	ok, err := k.NetnsExists(s.Name)
	if err != nil {
		return err.Error()
	}
	if !ok {
		return "missing"
	}
	if ino, err := k.NetnsInode(s.Name); err != nil {
		return err.Error()
	} else if s.Ino != 0 && ino != s.Ino {
		return fmt.Sprintf("replaced (inode %d, the lab's was %d)", ino, s.Ino)
	}
	tag, err := k.NetnsTag(s.Name)
	if err != nil {
		return fmt.Sprintf("reading its tag: %v", err)
	}
	if tag != s.Alias {
		return fmt.Sprintf("carries tag %q, not %q (not the lab's)", tag, s.Alias)
	}
	return ""
}

// checkAddr says what is wrong with an address the lab added, or "".
func checkAddr(k kernel.View, s journal.Step) string {
	addrs, err := k.Addrs(s.NS)
	if err != nil {
		return err.Error()
	}
	for _, a := range addrs {
		if a.Dev == s.Name && a.Prefix == s.Addr {
			return ""
		}
	}
	return "missing"
}

// hasRoute reports whether the lab's route r is among routes. A route added
// without a device has the one the kernel chose; an IPv6 route added with
// metric 0 has the kernel's default, 1024.
func hasRoute(routes []kernel.RouteInfo, r kernel.Route) bool {
	fam := r.Family
	if fam == 0 {
		fam = 4
		if r.Dst.IsValid() && r.Dst.Addr().Is6() || r.Via.IsValid() && r.Via.Is6() {
			fam = 6
		}
	}
	dst := r.Dst.Masked()
	if dst.Bits() == 0 {
		dst = netip.Prefix{} // as Routes shows a default route
	}
	proto := "nsrun"
	if r.Proto != 0 {
		proto = r.ProtoArg() // a lease's: "dhcp"
	}
	for _, got := range routes {
		switch {
		case got.Family != fam, got.Proto != proto, got.Dst != dst, got.Table != tableOf(r),
			got.Via != r.Via, r.Dev != "" && got.Dev != r.Dev, got.Type != routeTypeOf(r), got.Src != r.Src:
			continue
		case got.Metric == r.Metric, r.Metric == 0 && fam == 6 && got.Metric == 1024:
			return true
		}
	}
	return false
}

// routeTypeOf is a route's type as kernel.RouteInfo has it.
func routeTypeOf(r kernel.Route) string {
	if r.Type == "" {
		return "unicast"
	}
	return r.Type
}

// tableOf is a route's table as kernel.RouteInfo has it: main is 0.
func tableOf(r kernel.Route) int {
	if r.TableOf() == kernel.MainTable {
		return 0
	}
	return r.Table
}
