package builtins

import (
	"fmt"
	"sort"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// doc is one entry of the REPL's help: a signature and a line or two, as
// the README's API section has them.
type doc struct{ sig, text string }

// docs documents the builtins (by name), the methods (by type.method) and
// the value types. Keep it in step with README's API section.
var docs = map[string]doc{
	"machine":        {`machine(name, ssh="user@host", ssh_config=None, underlay=None, nsrun="nsrun")`, "Declares a machine of a lab across machines, reached with OpenSSH's ssh (your keys, agent, known_hosts; ssh_config as ssh -F; host keys always checked), running nsrun there as root (nsrun=\"sudo -n nsrun\" for a user allowed to).\nnetns(..., on=m) and bridge(..., on=m) place objects on it; a veth whose ends are on two machines becomes a VXLAN link on their underlay addresses (underlay=, default the address ssh reaches).\nEach machine keeps its own journal; a failure anywhere rolls every machine back. Declare machines before the first check.\nMethods: .name .ssh .host()"},
	"netns":          {`netns(name, lo=True, ipv6=True, private=[], private_owner=None, on=None)`, "Creates a network namespace and, unless lo=False, brings its loopback up.\nipv6=False turns IPv6 off in it from the start (no link-local addresses, no DAD, RS or MLD floods: IPv4 labs at scale).\nEach private path is an empty directory of the node's own (owned by private_owner), seen by every process nsrun starts in it; the machine's files are not changed.\non=m places it on machine m (see machine()).\nEquivalent to: ip netns add NAME; [ip netns exec NAME sysctl -w net.ipv6.conf.{all,default}.disable_ipv6=1;] ip -n NAME link set lo up\nMethods: .name .link() .route() .route_del() .rule() .rule_del() .delete() .sysctl() .write_file() .read_file() .links() .addrs() .routes() .neighbors()"},
	"ns":             {`ns(name)`, "The lab's namespace name (one a netns() of the lab made; \"host\" is host()): for a library not handed it, or the REPL on a lab that is up."},
	"host":           {`host()`, "The namespace nsrun runs in (the sandbox's root under --sandbox); nsrun changes in it only what the lab created."},
	"veth":           {`veth(name, peer, netns=host(), peer_netns=None, mac=None, peer_mac=None, mtu=None)`, "Creates a veth pair, each end directly in its namespace, and returns both links (a, b).\nEquivalent to: ip link add NAME type veth peer name PEER netns PEER_NETNS"},
	"bridge":         {`bridge(name, netns=host(), mac=None, mtu=None, stp=False, forward_delay=None, on=None)`, "Creates a bridge (on=m: in machine m's own namespace, see machine()); stp=True runs the kernel's spanning tree (a lab with loops), ports forwarding after twice forward_delay (2s to 30s; 15s by default).\nEquivalent to: ip link add NAME type bridge [stp_state 1 forward_delay CENTISECONDS]"},
	"macvlan":        {`macvlan(name, parent, mode="bridge", netns=None, mac=None, mtu=None)`, "Creates a macvlan on a link of the lab; mode is private, vepa, bridge or passthru.\nEquivalent to: ip link add NAME link PARENT type macvlan mode MODE"},
	"macvtap":        {`macvtap(name, parent, mode="bridge", netns=None, mac=None, mtu=None)`, "Creates a macvtap on a link of the lab, as macvlan does.\nEquivalent to: ip link add NAME link PARENT type macvtap mode MODE"},
	"dummy":          {`dummy(name, netns=host(), mac=None, mtu=None)`, "Creates a dummy link.\nEquivalent to: ip link add NAME type dummy"},
	"vxlan":          {`vxlan(name, vni, netns=host(), parent=None, local=None, remote=None, group=None, port=4789, learning=True, mac=None, mtu=None)`, "Creates a VXLAN link: frames go in UDP to remote (a VTEP), to group (multicast, joined on parent), or to the VTEPs link.fdb() names.\nlearning=False: only static entries say where a MAC is. In host() only where every link is the lab's (a vxlan takes VXLAN traffic from all).\nEquivalent to: ip link add NAME type vxlan id VNI remote REMOTE local LOCAL dstport PORT [nolearning] dev PARENT"},
	"link.shape":     {`link.shape(rate=None, burst=None, latency=None, delay=None, jitter=None, loss=None)`, "Shapes what the link sends: TBF for rate (\"50mbit\", or bits per second), burst (bytes) and latency; netem for delay, jitter and loss (percent), where the kernel has it.\nshape() with no arguments removes the shaping; the rollback puts back what was there. Changed in place by apply.\nEquivalent to: tc qdisc replace dev LINK root handle 1: tbf rate RATE burst BURST latency LATENCY"},
	"link.fdb":       {`link.fdb(mac, dst=None, master=False)`, "Adds a static forwarding entry: on a vxlan, the VTEP dst that mac is behind (00:00:00:00:00:00: where it floods); master=True: the link's bridge's entry, mac out of the link. The rollback removes it.\nEquivalent to: bridge fdb append MAC dev LINK [dst DST] self|master"},
	"link.fdb_del":   {`link.fdb_del(mac, dst=None, master=False)`, "Removes the lab's entry made with these arguments; the rollback puts it back.\nEquivalent to: bridge fdb del MAC dev LINK [dst DST] self|master"},
	"vlan":           {`vlan(name, parent, id, netns=None)`, "Creates an 802.1Q VLAN link on parent.\nEquivalent to: ip link add NAME link PARENT type vlan id ID"},
	"exec_in":        {`exec_in(netns, cmd, check=True, timeout="30s", stdin="", once=False)`, "once=True: a step of building the lab, journaled; an apply of a lab that ran it does not run it again.\nRuns a command (a list, or a string for /bin/sh -c) in the namespace, as ip netns exec does; returns .rc .stdout .stderr .timed_out.\nA non-zero exit fails the input unless check=False."},
	"spawn_in":       {`spawn_in(netns, cmd)`, "Starts a command in the background in the namespace; returns a proc (.pid, .stop()). It is stopped at teardown and on rollback."},
	"wait_until":     {`wait_until(fn, timeout="10s", interval="100ms", what=None)`, "Calls fn until it returns a true value, and returns it; no process is started to wait.\nAfter timeout the recipe fails at this line, saying what (or fn's name) and the time waited."},
	"ping":           {`ping(netns, dst, count=3, timeout="1s", interval="200ms", dev=None, src=None, size=56, df=False, ttl=None)`, "Sends ICMP echo from inside the namespace (from src, with size bytes of payload, never fragmented if df, with that ttl); returns .sent .received .ok .rtt_ms .ttl .error .error_from."},
	"tcp_connect":    {`tcp_connect(netns, addr, port, timeout="1s")`, "Opens (and closes) a TCP connection from inside the namespace, no helper program; returns .ok .error .rtt_ms."},
	"reach":          {`reach(netns, dst, count=3, timeout="1s", interval="200ms", dev=None, src=None, size=56, df=False, ttl=None)`, "Fails (and rolls back) unless a reply comes."},
	"unreachable":    {`unreachable(netns, dst, count=3, timeout="1s", interval="200ms", dev=None, src=None, size=56, df=False, ttl=None)`, "Fails (and rolls back) if a reply comes."},
	"pingall":        {`pingall(namespaces, count=1, timeout="500ms")`, "Pings between every pair of namespaces, like Mininet's pingall: {\"ns1\": {\"ns2\": True, ...}, ...}."},
	"capture":        {`capture(netns, dev, filter="", pcap=None)`, "Counts packets on a link by protocol (AF_PACKET); filters: arp ip ip6 icmp icmp6 tcp udp, host ADDR, joined by and. .stop() returns the counts; pcap= also writes a file."},
	"dhcp_server":    {`dhcp_server(netns, link, range, router=None, dns=[], lease="1h", subnet=None)`, "Serves DHCPv4 on link from a process of its own; returns a proc (.pid, .stop()).\nEquivalent to: ip netns exec NETNS dnsmasq --interface=LINK --dhcp-range=FIRST,LAST,LEASE"},
	"dhcp_client":    {`dhcp_client(link, timeout="5s", default_route=True)`, "Obtains a DHCPv4 lease on link and applies its address (with the lease's lifetime) and default route; returns struct(addr, router, dns, lease_s, server, planned).\nA process of the lab (dhcp_client-LINK) renews the lease at T1; inspect shows it."},
	"nat":            {`nat.masquerade | nat.snat | nat.dnat | nat.floating`, "NAT through nftables, in a table of the lab's own per namespace (never in host())."},
	"nat.masquerade": {`nat.masquerade(netns, out, src=None)`, "Rewrites the source of traffic leaving through out to out's address.\nEquivalent to: nft add rule ip nsrun-LAB postrouting oif OUT ip saddr SRC masquerade"},
	"nat.snat":       {`nat.snat(netns, src, to, out=None, proto=None, port=None)`, "Rewrites the source of traffic from src to the address to; with proto (tcp, udp, sctp) and port, only traffic to that destination port.\nEquivalent to: nft add rule ip nsrun-LAB postrouting ip saddr SRC meta l4proto PROTO th dport PORT snat to TO"},
	"nat.dnat":       {`nat.dnat(netns, dst, to, proto=None, port=None, to_port=None, in_=None)`, "Rewrites the destination dst to the address to; with port (of proto, TCP by default), only traffic to that port, and to_port rewrites it: port publishing (docker -p PORT:TO_PORT).\nEquivalent to: nft add rule ip nsrun-LAB prerouting ip daddr DST meta l4proto PROTO th dport PORT dnat to TO:TO_PORT"},
	"nat.floating":   {`nat.floating(netns, floating, fixed)`, "Neutron's floating IP: 1:1 DNAT of floating to fixed, and SNAT back."},
	"load_data":      {`load_data(path)`, "Reads a YAML (.yaml, .yml) or JSON (.json) file and returns its value: dicts in the file's order, lists, strings, numbers, booleans, None.\nFound as load() finds a module (beside the file that asks, then -L directories; an absolute path as it is); errors name the file's line. No other file access."},
	"sprintf":        {`sprintf(format, *args)`, "Formats as printf does, with flags, width and precision, which % has not: sprintf(\"%-20s %8.2f\", name, rate).\nVerbs: s r d x X o b c f e E g G %%"},
	"struct":         {`struct(**kwargs)`, "A record of named fields: struct(a=1).a"},
	"json":           {`json.encode(x) | json.decode(s) | json.indent(s)`, "The JSON module."},
	"math":           {`math.sqrt(x) | math.floor(x) | ...`, "The math module."},
	"argv":           {`argv`, "The arguments after the recipe's path, as a list of strings."},
	"help":           {`help(x=None)`, "help() lists the builtins; help(veth) or help(\"veth\") prints one's documentation (methods too: help(ns.link))."},

	"netns.name":       {`ns.name`, `The namespace's name ("host" for host()).`},
	"netns.link":       {`ns.link(name)`, "A link that already exists in the namespace, such as \"lo\".\nEquivalent to: ip -n NS link show NAME"},
	"netns.route":      {`ns.route(dst, via=None, dev=None, metric=None, table=None, type="unicast", src=None, replace=False)`, "Adds a route; dst is a CIDR or \"default\"; table= a routing table's number (main by default).\ntype= unicast (via= or dev=), blackhole (drops), unreachable or prohibit (drop with an ICMP error); src= the preferred source address.\nIn host(), dev= must be a lab link, and the type unicast.\nreplace=True puts it in the place of the lab's route to dst with that metric, in one change (the rollback puts the old one back).\nEquivalent to: ip -n NS route add|replace [TYPE] DST via VIA dev DEV metric METRIC table TABLE src SRC"},
	"netns.route_del":  {`ns.route_del(dst, metric=None, table=None)`, "Removes the lab's route to dst (\"default\", or \"::/0\" for IPv6's); the rollback puts it back. Only a route the lab added.\nEquivalent to: ip -n NS route del DST [table TABLE]"},
	"netns.rule":       {`ns.rule(src=None, dst=None, table=..., priority=None, iif=None, oif=None)`, "Adds a policy routing rule: packets from src, to dst, in by iif, out of oif are routed by table (254 is main); unset matches match all.\npriority orders the rules (1 to 32765, lowest first). Refused in host(): the machine's policy stays. The rollback removes it.\nEquivalent to: ip -n NS rule add from SRC to DST iif IIF oif OIF lookup TABLE pref PRIORITY"},
	"netns.rule_del":   {`ns.rule_del(src=None, dst=None, table=..., priority=None, iif=None, oif=None)`, "Removes the lab's rule made with these arguments; the rollback puts it back.\nEquivalent to: ip -n NS rule del ..."},
	"netns.delete":     {`ns.delete()`, "Deletes a namespace the lab made: its links first (as link.delete() does), then the lab's NAT in it, then the namespace; the rollback makes it again as it was. Refused for host(), while a process of the lab's runs in it, or with links in it the lab did not make.\nEquivalent to: ip netns del NS"},
	"netns.sysctl":     {`ns.sysctl(key, value)`, "Sets a sysctl in the namespace and returns the old value, restored on rollback.\nEquivalent to: ip netns exec NS sysctl -w KEY=VALUE"},
	"netns.write_file": {`ns.write_file(path, content, mode=0o644, owner=None)`, "A file that every process nsrun starts in the namespace sees at path (as /etc/netns/NS/ does for /etc, without writing the machine's /etc); removed at teardown, put back on rollback."},
	"netns.read_file":  {`ns.read_file(path)`, "What a process in the namespace reads at path: a file the lab wrote, one in a private directory (a daemon's output), or else the machine's."},
	"netns.links":      {`ns.links()`, "The namespace's links, as the kernel has them now."},
	"netns.addrs":      {`ns.addrs(scope=None, dev=None, full=False)`, "The namespace's addresses (CIDRs), as the kernel has them now; scope= (global, link, host) and dev= keep those of one scope or link.\nfull=True: each a struct(cidr, dev, scope, family)."},
	"netns.routes":     {`ns.routes()`, "The namespace's routes, as the kernel has them now."},
	"netns.neighbors":  {`ns.neighbors()`, "The ARP and NDP tables: [struct(ip, mac, dev, state)]."},
	"link":             {`link(netns, name) | a link`, "link(netns, name) finds the lab's link name in netns (a netns or its name): one the lab made, or one in a namespace it made, such as \"lo\".\nA link is made by veth(), bridge(), macvlan(), ...; its methods return it, so they chain.\nAttributes: .name .netns .mac .kind .peer  Methods: .addr() .addr_del() .up() .down() .delete() .master() .nomaster() .set() .move() .fdb() .fdb_del() .shape()"},
	"link.addr":        {`link.addr(addr, ...)`, "Adds addresses, v4 and v6; a bare address is /32 or /128.\nEquivalent to: ip addr add ADDR dev LINK"},
	"link.addr_del":    {`link.addr_del(addr, ...)`, "Removes addresses the lab gave the link; the rollback puts them back. Only the lab's own.\nEquivalent to: ip addr del ADDR dev LINK"},
	"link.delete":      {`link.delete()`, "Deletes a link the lab made (a veth: both ends); the rollback makes it again as it was (MACs, MTU, addresses, master, state, ports, routes).\nEquivalent to: ip link del LINK"},
	"link.up":          {`link.up()`, "Equivalent to: ip link set LINK up"},
	"link.down":        {`link.down()`, "Equivalent to: ip link set LINK down"},
	"link.master":      {`link.master(bridge)`, "Enslaves the link to a bridge.\nEquivalent to: ip link set LINK master BRIDGE"},
	"link.nomaster":    {`link.nomaster()`, "Equivalent to: ip link set LINK nomaster"},
	"link.set":         {`link.set(mtu=None, mac=None, hairpin=None)`, "Equivalent to: ip link set LINK mtu MTU address MAC; bridge link set dev LINK hairpin on"},
	"link.move":        {`link.move(netns)`, "Moves the link to another namespace (prefer creating it in place).\nEquivalent to: ip link set LINK netns NETNS"},
	"proc":             {`a proc`, "A background process from spawn_in() or dhcp_server(): .pid, .stop()."},
	"proc.stop":        {`proc.stop()`, "Stops the process and its children (SIGTERM, then SIGKILL)."},
	"capture.stop":     {`capture.stop()`, "Stops the capture and returns its counts by protocol."},
}

// Doc returns the documentation of a builtin, method (type.method) or
// type, or "" if there is none.
func Doc(name string) string {
	d, ok := docs[name]
	if !ok {
		return ""
	}
	return d.sig + "\n" + indent(d.text)
}

// Summaries lists the predeclared names with the first line of each one's
// documentation, sorted, for help().
func Summaries() []string {
	var names []string
	for name := range Predeclared(nil) {
		names = append(names, name)
	}
	names = append(names, "help")
	sort.Strings(names)
	lines := make([]string, 0, len(names))
	for _, name := range names {
		d := docs[name]
		first, _, _ := strings.Cut(d.text, "\n")
		lines = append(lines, fmt.Sprintf("  %-14s %s", name, first))
	}
	return lines
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// Help is the REPL's help(): help() lists the builtins, help(veth),
// help("veth") or help(ns.link) prints one's documentation.
var Help = starlark.NewBuiltin("help", help)

func help(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "x?", &x); err != nil {
		return nil, err
	}
	var name string
	switch x := x.(type) {
	case starlark.NoneType:
		thread.Print(thread, "Builtins (help(NAME) for one; Starlark's own: print, fail, len, range, ...):\n"+strings.Join(Summaries(), "\n"))
		return starlark.None, nil
	case starlark.String:
		name = string(x)
	case *starlark.Builtin:
		name = x.Name()
		if r := x.Receiver(); r != nil {
			name = r.Type() + "." + name
		}
	case *starlarkstruct.Module:
		name = x.Name
	case *starlark.Function: // a recipe's or a library's: its signature and docstring
		params := make([]string, x.NumParams())
		for i := range params {
			params[i], _ = x.Param(i)
		}
		text := x.Name() + "(" + strings.Join(params, ", ") + ")"
		if doc := dedent(x.Doc()); doc != "" {
			text += "\n" + indent(doc)
		}
		thread.Print(thread, text+"\n    (defined at "+x.Position().String()+")")
		return starlark.None, nil
	default:
		name = x.Type()
	}
	d := Doc(name)
	if d == "" {
		return nil, fmt.Errorf("%s: no documentation for %s", b.Name(), name)
	}
	thread.Print(thread, d)
	return starlark.None, nil
}

// dedent removes from a docstring's lines after the first the indentation
// they share, as Python's inspect.cleandoc does.
func dedent(doc string) string {
	lines := strings.Split(strings.TrimSpace(doc), "\n")
	common := -1
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " \t"))
		if common < 0 || n < common {
			common = n
		}
	}
	for i := 1; i < len(lines) && common > 0; i++ {
		if len(lines[i]) >= common {
			lines[i] = lines[i][common:]
		} else {
			lines[i] = strings.TrimLeft(lines[i], " \t")
		}
	}
	return strings.Join(lines, "\n")
}
