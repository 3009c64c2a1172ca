package view

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/nsrun/nsrun/runtime/dhcp"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/nsrun/nsrun/runtime/proc"
	"github.com/nsrun/nsrun/runtime/store"
)

// LabView is a lab as the kernel has it now, as `nsrun inspect` shows it.
// Every list is sorted, and empty lists are [] in JSON, never null, so that
// tools need no special case.
type LabView struct {
	Lab        string      `json:"lab"`
	ID         string      `json:"id"`
	State      string      `json:"state"`
	Recipe     string      `json:"recipe"`
	Namespaces []NetnsView `json:"namespaces"` // "host" first (if the lab made links there), then by name
	Processes  []ProcView  `json:"processes"`  // by pid
	Leases     []dhcp.Held `json:"leases"`     // DHCP leases kept by dhcp_client, by link
}

// NetnsView is one namespace of a lab. For "host" only what the lab made is
// shown: its links, their addresses, and the routes and neighbours on them.
type NetnsView struct {
	Name string `json:"name"`
	// Machine is the machine the namespace is on, in a lab across
	// machines; one not this machine's is not read here.
	Machine   string      `json:"machine,omitempty"`
	Away      bool        `json:"away,omitempty"`
	Error     string      `json:"error,omitempty"` // why it could not be read: "missing", ...
	Links     []LinkView  `json:"links"`
	Routes    []RouteView `json:"routes"`
	Rules     []string    `json:"rules,omitempty"` // the lab's policy rules, as `ip rule add` takes them
	Neighbors []NeighView `json:"neighbors"`
}

// LinkView is a link with its addresses (`ip -br addr` and `ip -d link`).
type LinkView struct {
	Name   string   `json:"name"`
	Kind   string   `json:"kind"`
	MAC    string   `json:"mac"`
	MTU    int      `json:"mtu"`
	Up     bool     `json:"up"`
	Master string   `json:"master,omitempty"`
	Tag    string   `json:"tag,omitempty"`   // the link's alias: "nsrun:LAB" on the lab's links
	Addrs  []string `json:"addrs"`           // "10.0.0.1/24", IPv4 then IPv6
	Shape  string   `json:"shape,omitempty"` // its root qdisc, as tc takes it: "tbf rate 50mbit burst 62500b latency 50ms"
}

// RouteView is a route (`ip route show table all`, but the local table's).
type RouteView struct {
	Dst    string `json:"dst"` // a CIDR or "default"
	Family int    `json:"family"`
	Table  int    `json:"table,omitempty"` // 0: main
	Via    string `json:"via,omitempty"`
	Dev    string `json:"dev,omitempty"`
	Proto  string `json:"proto"` // "kernel", "nsrun" (the lab's own), ...
	Metric int    `json:"metric,omitempty"`
	Type   string `json:"type"` // "unicast", "multicast", "blackhole", ...
	Src    string `json:"src,omitempty"`
}

// NeighView is an ARP or NDP entry (`ip neigh`).
type NeighView struct {
	IP    string `json:"ip"`
	MAC   string `json:"mac,omitempty"`
	Dev   string `json:"dev"`
	State string `json:"state"`
}

// ProcView is a live process carrying the lab's tag (see ProcessTagEnv).
type ProcView struct {
	Machine string `json:"machine,omitempty"` // in a lab across machines, the machine it runs on
	Pid     int    `json:"pid"`
	Name    string `json:"name,omitempty"` // as spawn_in named it; "" for a process it started, or exec_in's`
	Netns   string `json:"netns"`          // a namespace of the lab, "host", or "?" for another
	Command string `json:"command"`
}

// Inspect reads the lab's namespaces, links, addresses, routes, neighbours
// and processes from the kernel.
//
// Equivalent to: for each namespace, ip -n $ns -d link; ip -n $ns addr;
// ip -n $ns route; ip -n $ns -6 route; ip -n $ns neigh; and a look for
// NSRUN_LAB=LAB/ID in /proc/*/environ.
func Inspect(l *store.Lab, k kernel.View) (LabView, error) {
	st, steps, err := l.State()
	if err != nil {
		return LabView{}, err
	}
	v := LabView{Lab: l.Info.Name, ID: l.Info.ID, State: l.Info.State, Recipe: l.Info.Recipe, Namespaces: []NetnsView{}}
	on, away := map[string]string{}, map[string]bool{}
	_, machines, here := store.Placement(steps)
	hostHere := machines == nil // the lab has links in this machine's own namespace
	for _, s := range steps {
		switch {
		case s.Op == journal.OpNetns:
			on[s.Name], away[s.Name] = s.On, s.Away
		case s.Away:
		case s.Op == journal.OpLink && (s.NS == kernel.Host || s.PeerName != "" && s.PeerNS == kernel.Host),
			s.Op == journal.OpMove && s.New == kernel.Host:
			hostHere = true
		}
	}
	if st.HostLinks() && hostHere {
		hv := inspectNetns(k, kernel.Host, func(name, alias string) bool {
			_, ours := st.MadeLink(kernel.Host, name)
			return ours || alias == l.Tag()
		})
		hv.Machine = here
		v.Namespaces = append(v.Namespaces, hv)
	}
	var netns []string
	for _, ns := range st.NetnsNames() {
		if away[ns] { // another machine's, read there
			v.Namespaces = append(v.Namespaces, NetnsView{Name: ns, Machine: on[ns], Away: true, Links: []LinkView{}, Routes: []RouteView{}, Neighbors: []NeighView{}})
			continue
		}
		nv := inspectNetns(k, ns, nil)
		nv.Machine = on[ns]
		v.Namespaces = append(v.Namespaces, nv)
		netns = append(netns, ns)
	}
	v.Processes = labProcesses(l.ProcessTag(), k, netns)
	names := map[int]string{}
	for _, s := range steps {
		if s.Op == journal.OpProc && proc.Running(s.Pid, s.Start) {
			names[s.Pid] = s.Name
		}
	}
	for i := range v.Processes {
		v.Processes[i].Name = names[v.Processes[i].Pid]
	}
	v.Leases = dhcp.ReadHeld(filepath.Join(l.Dir, "dhcp"))
	if v.Leases == nil {
		v.Leases = []dhcp.Held{}
	}
	return v, nil
}

// Merge puts into v, a lab across machines as its coordinator reads it,
// machine's part as that machine read it (its `nsrun inspect --json`): its
// namespaces in place of those v could not read, its host namespace's
// links of the lab after the hosts before it, its processes and leases.
func (v *LabView) Merge(machine string, part LabView) {
	hosts := 0
	for hosts < len(v.Namespaces) && v.Namespaces[hosts].Name == kernel.NSArg(kernel.Host) {
		hosts++
	}
	for _, nv := range part.Namespaces {
		if nv.Away { // read on its own machine
			continue
		}
		nv.Machine = machine
		if nv.Name == kernel.NSArg(kernel.Host) {
			v.Namespaces = slices.Insert(v.Namespaces, hosts, nv)
			hosts++
			continue
		}
		for i := range v.Namespaces {
			if v.Namespaces[i].Name == nv.Name && v.Namespaces[i].Away && v.Namespaces[i].Machine == machine {
				v.Namespaces[i] = nv
			}
		}
	}
	for _, p := range part.Processes {
		p.Machine = machine
		v.Processes = append(v.Processes, p)
	}
	v.Leases = append(v.Leases, part.Leases...)
}

// inspectNetns reads one namespace; with keep, only the links keep accepts
// (and what is on them).
func inspectNetns(k kernel.View, ns string, keep func(name, alias string) bool) NetnsView {
	v := NetnsView{Name: kernel.NSArg(ns), Links: []LinkView{}, Routes: []RouteView{}, Neighbors: []NeighView{}}
	if ns != kernel.Host {
		if ok, err := k.NetnsExists(ns); err == nil && !ok {
			v.Error = "missing"
			return v
		}
	}
	links, err := k.Links(ns)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	shown := map[string]bool{}
	for _, li := range links {
		if keep != nil && !keep(li.Name, li.Alias) {
			continue
		}
		shown[li.Name] = true
		v.Links = append(v.Links, LinkView{Name: li.Name, Kind: li.Kind, MAC: li.MAC, MTU: li.MTU, Up: li.Up,
			Master: li.Master, Tag: li.Alias, Addrs: []string{}})
	}
	if sl, ok := kernel.As[kernel.ShapeLister](k); ok {
		shapes, err := sl.Shapes(ns)
		if err != nil {
			v.Error = err.Error()
			return v
		}
		for i := range v.Links {
			v.Links[i].Shape = shapes[v.Links[i].Name].String()
		}
	}
	addrs, err := k.Addrs(ns)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	for _, a := range addrs {
		if i := slices.IndexFunc(v.Links, func(l LinkView) bool { return l.Name == a.Dev }); i >= 0 {
			v.Links[i].Addrs = append(v.Links[i].Addrs, a.Prefix.String())
		}
	}
	routes, err := k.Routes(ns)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	for _, r := range routes {
		if keep != nil && !shown[r.Dev] {
			continue
		}
		rv := RouteView{Dst: "default", Family: r.Family, Table: r.Table, Dev: r.Dev, Proto: r.Proto, Metric: r.Metric, Type: r.Type}
		if r.Src.IsValid() {
			rv.Src = r.Src.String()
		}
		if r.Dst.IsValid() {
			rv.Dst = r.Dst.String()
		}
		if r.Via.IsValid() {
			rv.Via = r.Via.String()
		}
		v.Routes = append(v.Routes, rv)
	}
	if rl, ok := kernel.As[kernel.RuleLister](k); ok && ns != kernel.Host {
		rules, err := rl.Rules(ns)
		if err != nil {
			v.Error = err.Error()
			return v
		}
		for _, r := range rules {
			v.Rules = append(v.Rules, r.String())
		}
	}
	neighs, err := k.Neighbors(ns)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	for _, n := range neighs {
		if keep != nil && !shown[n.Dev] {
			continue
		}
		v.Neighbors = append(v.Neighbors, NeighView{IP: n.IP.String(), MAC: n.MAC, Dev: n.Dev, State: n.State})
	}
	return v
}

// labProcesses lists the live processes of a lab (see processesOf), with
// the namespace each is in (by the inode of its network namespace).
func labProcesses(tag string, k kernel.View, netns []string) []ProcView {
	where, inos := map[uint64]string{}, map[uint64]bool{}
	for _, ns := range netns {
		if ino, err := k.NetnsInode(ns); err == nil {
			where[ino], inos[ino] = ns, true
		}
	}
	if ino, err := nsexec.Inode("/proc/self/ns/net"); err == nil {
		where[ino] = "host"
	}
	out := []ProcView{}
	for _, pid := range store.ProcessesOf(tag, inos) {
		p := ProcView{Pid: pid, Netns: "?", Command: commandLine(pid)}
		if ns, ok := where[proc.Netns(pid)]; ok {
			p.Netns = ns
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b ProcView) int { return a.Pid - b.Pid })
	return out
}

// commandLine returns a process's argv as a shell would show it; the
// helper's own "/proc/self/exe" (see nsexec.Command) is left out.
func commandLine(pid int) string {
	argv := proc.Cmdline(pid)
	if len(argv) == 0 {
		return "[" + proc.Comm(pid) + "]"
	}
	if len(argv) > 1 && argv[0] == "/proc/self/exe" {
		argv = argv[1:]
	}
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$") {
			argv[i] = strconv.Quote(a)
		}
	}
	return strings.Join(argv, " ")
}
