package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"golang.org/x/sys/unix"
)

// Identity is what a step asks of the kernel, as a string: two steps with
// the same identity, one a plan's and one a lab's, make the same object or
// setting. It leaves out what a run learns as it goes (inodes, pids, what
// a setting was before) and where in the recipe the step comes from; a NAT
// rule is known by what it does, not by its comment. Removals have none
// (""): nothing of a lab is ever taken as one.
func Identity(s journal.Step) string {
	if s.Kind == Revert {
		return ""
	}
	switch s.Op {
	case journal.OpLinkDel, journal.OpAddrDel, journal.OpRouteDel, journal.OpNetnsDel, journal.OpStop:
		return ""
	}
	if strings.HasSuffix(s.Op, "_del") {
		return ""
	}
	// Built by hand, not with fmt: an apply keys every step of the lab's
	// and of its plan.
	var b strings.Builder
	field := func(v ...string) {
		for _, v := range v {
			b.WriteByte('|')
			b.WriteString(v)
		}
	}
	b.WriteString(s.Op)
	field(s.NS, s.Name, s.Kind)
	switch s.Op {
	case journal.OpNetns:
		field(s.Alias)
	case journal.OpLink:
		field(s.Alias, s.MAC, s.PeerNS, s.PeerName, s.PeerMAC, s.ParentNS, s.Parent, s.Mode)
	case journal.OpAddr:
		field(s.Addr.String())
	case journal.OpRoute: // the route, whether or not it took another's place
		r, _ := json.Marshal(s.Route)
		field(string(r))
	default: // settings, sysctls, moves, processes, files, other packages' ops
		field(s.New, s.Sum)
	}
	if s.NAT != nil {
		r := *s.NAT
		r.Comment = ""
		j, _ := json.Marshal(r)
		field(string(j))
	} else if s.Op != journal.OpNetns && s.Op != journal.OpLink {
		field(s.Alias)
	}
	return b.String()
}

// Key is what an apply matches a plan's step with a lab's by (see
// engine.Runtime.Adopt): the step's identity, and whether what it made is
// still there at the end (live: see Live). Two steps with one key make the
// same change, one the lab's and one the plan's, with the same future: a
// change the recipe makes and then undoes itself (an address added, then
// removed) is the lab's already if the lab made and undid it too. A
// removal's key is what it removes. A revert (an apply's) has none.
func Key(s journal.Step, live bool) string {
	if s.Kind == Revert {
		return ""
	}
	if id := Identity(s); id != "" {
		if !live {
			return id + UndoneKey
		}
		return id
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|%s|%s", s.Op, s.NS, s.Name, s.Kind, s.Addr)
	if s.Route != nil {
		r, _ := json.Marshal(s.Route)
		b.Write(r)
	}
	if s.NAT != nil {
		r := *s.NAT
		r.Comment = ""
		j, _ := json.Marshal(r)
		b.Write(j)
	}
	return b.String()
}

// UndoneKey ends the key of a step whose change was undone since, and
// SupersededKey that of a setting set again since.
const (
	UndoneKey     = "|undone"
	SupersededKey = "|then"
)

// BaseKey is k without the ending of an undone or superseded step's.
func BaseKey(k string) string {
	return strings.TrimSuffix(strings.TrimSuffix(k, UndoneKey), SupersededKey)
}

// IsSetting reports whether op sets a value of a link or namespace that a
// later step of the same op may set again.
func IsSetting(op string) bool {
	switch op {
	case journal.OpUp, journal.OpMTU, journal.OpMAC, journal.OpMaster, journal.OpHairpin, journal.OpSysctl, journal.OpShape:
		return true
	}
	return false
}

// SettingOf is what a setting step sets: its op, namespace and name.
func SettingOf(s journal.Step) string { return s.Op + "|" + s.NS + "|" + s.Name }

// Keys returns the key of each step, live as Live finds it; a setting that
// a later step sets again has the superseded key, so that only the lab's
// last value of a setting is taken for the recipe's last.
func Keys(steps []journal.Step, live []bool) []string {
	keys := make([]string, len(steps))
	later := map[string]bool{}
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		if s.State == journal.StateIntent {
			continue
		}
		keys[i] = Key(s, live[i])
		if IsSetting(s.Op) && keys[i] != "" {
			if later[SettingOf(s)] && live[i] {
				keys[i] += SupersededKey
			}
			later[SettingOf(s)] = true
		}
	}
	return keys
}

// Leased is the Kind of an address step a DHCP lease gave.
const Leased = "dhcp"

// IsLeased reports whether s is a DHCP client's: a leased address, its
// default route (proto dhcp), the process keeping the lease. What a lease
// makes is the answer of a server, known only when the run asks it (a
// plan may not know it): an apply makes it again as a run does, and
// removes only what the run no longer takes.
func IsLeased(s journal.Step) bool {
	switch s.Op {
	case journal.OpAddr:
		return s.Kind == Leased
	case journal.OpRoute:
		return s.Route != nil && s.Route.Proto == unix.RTPROT_DHCP
	case journal.OpProc:
		return strings.HasPrefix(s.Name, "dhcp_client-")
	}
	return false
}

// Revert is the Kind of an apply's step that puts a setting back as it
// was before the lab first set it (see Live).
const Revert = "revert"

// Live reports, for each of a lab's steps, whether what it made is still
// the lab's as the step made it: not removed since (a link, an address, a
// route, a namespace, a process, a NAT rule or table), nor taken by the
// kernel with something removed (a link's settings and addresses with it,
// a port's membership with its bridge, the routes through a link with it,
// what was in a namespace with it). A step whose effect a later step only
// changed (a setting set again, a link moved) is live: it is part of how
// the lab came to be.
func Live(steps []journal.Step) []bool {
	live, _ := LiveState(steps)
	return live
}

// LiveState is Live, and returns the steps' model too (Replay of them,
// with intents).
func LiveState(steps []journal.Step) ([]bool, *State) {
	st := Sized(true, len(steps))
	return MoreLive(steps, nil, st), st
}

// MoreLive extends live, the liveness of a prefix of steps whose model is
// st (see LiveState), to all of steps, and st with them: the steps added
// since (a journal's) are modelled alone.
func MoreLive(steps []journal.Step, live []bool, st *State) []bool {
	from := len(live)
	live = append(live, make([]bool, len(steps)-from)...)
	for i := from; i < len(steps); i++ {
		s := steps[i]
		st.Apply(i, s)
		if s.State == journal.StateIntent {
			continue
		}
		live[i] = Identity(s) != ""
		kill := func(match func(j int, c journal.Step) bool, latest bool) {
			for j := i - 1; j >= 0; j-- {
				if live[j] && match(j, steps[j]) {
					live[j] = false
					if latest {
						return
					}
				}
			}
		}
		if s.Kind == Revert { // the lab's settings of the key are over
			kill(func(j int, c journal.Step) bool { return c.Op == s.Op && c.NS == s.NS && c.Name == s.Name }, false)
			continue
		}
		switch s.Op {
		case journal.OpLinkDel:
			l := st.Of[i]
			if l == nil {
				continue
			}
			routes := wasRoutes(s.Was)
			ends := map[*Link]bool{l: true}
			if l.Peer != nil {
				ends[l.Peer] = true
			}
			kill(func(j int, c journal.Step) bool {
				switch {
				case ends[st.Of[j]]:
					return true
				case c.Op == journal.OpMaster && c.New == l.At.Name && c.NS == l.At.NS:
					return true // a port of the bridge: released with it
				case c.Op == journal.OpRoute && c.Route != nil && routes[c.NS+"|"+keyString(c.Route.Key())]:
					return true
				}
				return false
			}, false)
		case journal.OpUp:
			// Taken down, the link lost what the kernel dropped with it
			// (its IPv6 addresses, the routes through it): up again,
			// the link does not get them back.
			if s.New != "down" || s.Was == nil {
				continue
			}
			l, routes, addrs := st.Of[i], wasRoutes(s.Was), map[netip.Prefix]bool{}
			for _, e := range s.Was.Ends {
				for _, a := range e.Addrs {
					addrs[a] = true
				}
			}
			kill(func(j int, c journal.Step) bool {
				switch c.Op {
				case journal.OpRoute:
					return c.Route != nil && routes[c.NS+"|"+keyString(c.Route.Key())]
				case journal.OpAddr:
					return l != nil && st.Of[j] == l && addrs[c.Addr]
				}
				return false
			}, false)
		case journal.OpAddrDel:
			l := st.Of[i]
			kill(func(j int, c journal.Step) bool {
				return c.Op == journal.OpAddr && st.Of[j] == l && c.Addr == s.Addr
			}, true)
			if s.Was != nil { // the routes the kernel dropped with it
				routes := wasRoutes(s.Was)
				kill(func(j int, c journal.Step) bool {
					return c.Op == journal.OpRoute && c.Route != nil && routes[c.NS+"|"+keyString(c.Route.Key())]
				}, false)
			}
		case journal.OpFDBDel:
			l := st.Of[i]
			kill(func(j int, c journal.Step) bool {
				return c.Op == journal.OpFDB && st.Of[j] == l && c.New == s.New
			}, true)
		case journal.OpRouteDel:
			kill(func(j int, c journal.Step) bool {
				return c.Op == journal.OpRoute && c.NS == s.NS && c.Route != nil && s.Route != nil && c.Route.Key() == s.Route.Key()
			}, true)
		case journal.OpRoute:
			if s.OldRoute != nil { // it took the place of the lab's route
				kill(func(j int, c journal.Step) bool {
					return c.Op == journal.OpRoute && c.NS == s.NS && c.Route != nil && c.Route.Key() == s.Route.Key()
				}, true)
			}
		case journal.OpNetnsDel:
			made := -1
			for j := i - 1; j >= 0; j-- {
				if steps[j].Op == journal.OpNetns && steps[j].Name == s.Name {
					made = j
					break
				}
			}
			kill(func(j int, c journal.Step) bool {
				return j >= made && (j == made || c.NS == s.Name)
			}, false)
		case journal.OpStop:
			kill(func(j int, c journal.Step) bool {
				return c.Op == journal.OpProc && c.Pid == s.Pid && c.Start == s.Start
			}, true)
		default:
			if strings.HasSuffix(s.Op, "_del") { // another package's removal: the object of its name and kind
				op := strings.TrimSuffix(s.Op, "_del")
				kill(func(j int, c journal.Step) bool {
					return c.Op == op && c.NS == s.NS && c.Name == s.Name && c.Kind == s.Kind && (s.Alias == "" || c.Alias == s.Alias)
				}, s.Alias != "")
			}
		}
	}
	return live
}

func keyString(k kernel.RouteKey) string { return fmt.Sprint(k) }

// wasRoutes are the routes a link's removal or down recorded (see
// journal.LinkWas), by namespace and key.
func wasRoutes(was *journal.LinkWas) map[string]bool {
	routes := map[string]bool{}
	if was != nil {
		for _, e := range was.Ends {
			for _, r := range e.Routes {
				routes[e.NS+"|"+keyString(r.Key())] = true
			}
		}
	}
	return routes
}
