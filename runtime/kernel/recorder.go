package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Recorder is a Kernel that changes nothing: it keeps a model of the objects
// a run made, so that lookups and collisions behave as the kernel's would,
// and logs every change as the equivalent iproute2 command. (To make its
// run's changes fail, see package fault.)
type Recorder struct {
	Log []string
	// Quiet keeps no Log: a run's preflight prints none of its commands,
	// and a large lab's would cost the run their formatting.
	Quiet bool
	// Real, if set, is the kernel whose existing namespaces and host links
	// the model starts with (read, never changed): planning then finds the
	// collisions a run would hit.
	Real Kernel

	Observed bool // see Observe

	realHost map[string]LinkInfo // the machine's links, by name, as Real listed them
	given    map[[2]string]int   // ports given to each bridge, ever (see LinkSetMaster)

	nat map[recNATKey][]string // see recorder_nat.go

	changes int
	netns   map[string]uint64
	links   map[[2]string]*LinkInfo
	sysctl  map[[2]string]string
	routes  map[string][]recRoute // by namespace; see RouteAdd
	shapes  map[[2]string]Shape   // by namespace and link; see SetShape
	rules   map[string][]Rule     // by namespace; see RuleAdd
	nextIno uint64
}

// recRoute is a route in the recorder's model: what makes two routes the
// same to the kernel, and the device whose going away takes it.
type recRoute struct {
	RouteKey
	dev   string
	via   netip.Addr
	proto string // as Routes shows it: "kernel" for an address's subnet, "nsrun" or "dhcp"
	typ   string // as Routes shows it: "unicast", "blackhole", ...
	src   netip.Addr
}

// NewRecorder returns an empty recorder; the host namespace has lo.
func NewRecorder() *Recorder {
	r := &Recorder{netns: map[string]uint64{}, links: map[[2]string]*LinkInfo{}, sysctl: map[[2]string]string{}, routes: map[string][]recRoute{}, nextIno: 4026532000}
	r.links[[2]string{Host, "lo"}] = &LinkInfo{Name: "lo", Kind: "loopback", Up: true, MTU: 65536, MAC: "00:00:00:00:00:00"}
	return r
}

func (r *Recorder) change(format string, args ...any) error {
	r.changes++
	if !r.Quiet {
		r.Log = append(r.Log, fmt.Sprintf(format, args...))
	}
	return nil
}

func ipn(ns string) string {
	if ns == Host {
		return "ip"
	}
	return "ip -n " + ns
}

func (r *Recorder) NetnsAdd(s NetnsSpec) (NetnsID, error) {
	name := s.Name
	if _, ok := r.netns[name]; ok {
		return NetnsID{}, unix.EEXIST
	}
	if r.Real != nil {
		if exists, _ := r.Real.NetnsExists(name); exists {
			return NetnsID{}, unix.EEXIST
		}
	}
	cmd := "ip netns add " + name
	if s.NoIPv6 {
		cmd += "; ip netns exec " + name + " sysctl -qw " + ipv6Off + "=1 " + ipv6OffDefault + "=1"
	}
	if s.LoUp {
		cmd += "; ip -n " + name + " link set lo up"
	}
	if err := r.change("%s", cmd); err != nil {
		return NetnsID{}, err
	}
	if s.NoIPv6 {
		r.sysctl[[2]string{name, ipv6Off}] = "1"
		r.sysctl[[2]string{name, ipv6OffDefault}] = "1"
	}
	r.nextIno++
	r.netns[name] = r.nextIno
	r.links[[2]string{name, "lo"}] = &LinkInfo{NS: name, Name: "lo", Kind: "loopback", Up: s.LoUp, MTU: 65536, MAC: "00:00:00:00:00:00", Alias: s.Tag}
	return NetnsID{Ino: r.nextIno}, nil
}

func (r *Recorder) NetnsDel(name, tag string, id NetnsID) error {
	got, ok := r.netns[name]
	if !ok {
		return nil
	}
	if tag == "" || (id.Ino != 0 && got != id.Ino) || r.links[[2]string{name, "lo"}].Alias != tag {
		return fmt.Errorf("netns %q: %w", name, ErrNotOurs)
	}
	if err := r.change("ip netns del %s", name); err != nil {
		return err
	}
	delete(r.netns, name)
	delete(r.routes, name)
	delete(r.rules, name)
	for key := range r.links {
		if key[0] == name {
			r.dropLink(key)
		}
	}
	return nil
}

func (r *Recorder) NetnsExists(name string) (bool, error) {
	_, ok := r.netns[name]
	return ok, nil
}

func (r *Recorder) hasNS(ns string) error {
	if _, ok := r.netns[ns]; ns != Host && !ok {
		return fmt.Errorf("netns %q: %w", ns, ErrNotFound)
	}
	return nil
}

func (r *Recorder) LinkAdd(s LinkSpec) error {
	for _, ns := range []string{s.NS, s.PeerNS, s.ParentNS} {
		if err := r.hasNS(ns); err != nil {
			return err
		}
	}
	if r.exists(s.NS, s.Name) {
		return unix.EEXIST
	}
	var cmd string
	switch s.Kind {
	case "veth":
		if r.exists(s.PeerNS, s.PeerName) {
			return unix.EEXIST
		}
		// The pair is made from the host's side when it has an end there:
		// the host namespace has no name to give `netns`.
		a, b := vethEnd{s.NS, s.Name, s.MAC}, vethEnd{s.PeerNS, s.PeerName, s.PeerMAC}
		if a.ns != Host && b.ns == Host {
			a, b = b, a
		}
		cmd = fmt.Sprintf("%s link add %s%s type veth peer name %s%s", ipn(a.ns), a.name, linkOpts(a.mac, s.MTU), b.name, linkOpts(b.mac, s.MTU))
		if b.ns != a.ns {
			cmd += " netns " + nsRef(b.ns)
		}
	case "macvlan", "macvtap", "vlan":
		if _, ok := r.links[[2]string{s.ParentNS, s.Parent}]; !ok {
			return fmt.Errorf("parent %q in netns %q: %w", s.Parent, NSArg(s.ParentNS), ErrNotFound)
		}
		cmd = fmt.Sprintf("%s link add %s link %s%s", ipn(s.ParentNS), s.Name, s.Parent, linkOpts(s.MAC, s.MTU))
		if s.NS != s.ParentNS {
			cmd += " netns " + nsRef(s.NS)
		}
		switch s.Kind {
		case "vlan":
			cmd += fmt.Sprintf(" type vlan id %d", s.VlanID)
		default:
			cmd += fmt.Sprintf(" type %s mode %s", s.Kind, s.Mode)
		}
	case "vxlan":
		dev := ""
		if s.Parent != "" {
			if _, ok := r.links[[2]string{s.NS, s.Parent}]; !ok {
				return fmt.Errorf("parent %q in netns %q: %w", s.Parent, NSArg(s.NS), ErrNotFound)
			}
			dev = " dev " + s.Parent
		}
		cmd = fmt.Sprintf("%s link add %s%s type vxlan %s%s", ipn(s.NS), s.Name, linkOpts(s.MAC, s.MTU), s.VxlanArgs(), dev)
		if s.SocketHost && s.NS != Host { // made in the machine's namespace, its socket staying there
			cmd = fmt.Sprintf("ip link add %s%s netns %s type vxlan %s", s.Name, linkOpts(s.MAC, s.MTU), nsRef(s.NS), s.VxlanArgs())
		}
	case "bridge":
		cmd = strings.TrimSpace(fmt.Sprintf("%s link add %s%s type bridge %s", ipn(s.NS), s.Name, linkOpts(s.MAC, s.MTU), s.BridgeArgs()))
	default:
		cmd = fmt.Sprintf("%s link add %s%s type %s", ipn(s.NS), s.Name, linkOpts(s.MAC, s.MTU), s.Kind)
	}
	if err := r.change("%s", cmd); err != nil {
		return err
	}
	r.links[[2]string{s.NS, s.Name}] = &LinkInfo{NS: s.NS, Name: s.Name, Kind: s.Kind, MAC: s.MAC.String(), MTU: mtuOr(s.MTU), Alias: s.Alias}
	switch s.Kind {
	case "macvlan", "macvtap":
		l := r.links[[2]string{s.NS, s.Name}]
		l.parent, l.mode = [2]string{s.ParentNS, s.Parent}, s.Mode
	case "vlan":
		l := r.links[[2]string{s.NS, s.Name}]
		l.parent, l.mode = [2]string{s.ParentNS, s.Parent}, strconv.Itoa(s.VlanID)
	case "vxlan":
		// As the kernel makes it: room for its headers below its
		// parent's MTU (without a parent, Ethernet's).
		l := r.links[[2]string{s.NS, s.Name}]
		if p, ok := r.links[[2]string{s.NS, s.Parent}]; ok && s.Parent != "" && s.MTU == 0 {
			l.MTU = p.MTU - 50
		}
		if s.Parent != "" {
			l.parent = [2]string{s.NS, s.Parent}
		}
		l.mode = s.VxlanArgs()
	}
	if s.Kind == "veth" {
		r.links[[2]string{s.PeerNS, s.PeerName}] = &LinkInfo{NS: s.PeerNS, Name: s.PeerName, Kind: s.Kind, MAC: s.PeerMAC.String(), MTU: mtuOr(s.MTU), Alias: peerAlias(s), peer: [2]string{s.NS, s.Name}}
		r.links[[2]string{s.NS, s.Name}].peer = [2]string{s.PeerNS, s.PeerName}
	}
	return nil
}

// vethEnd is one end of a veth pair being made.
type vethEnd struct {
	ns, name string
	mac      net.HardwareAddr
}

// linkOpts are a new link's own options, as iproute2 takes them: before
// its type (after it, they would be the type's, or the peer's).
func linkOpts(mac net.HardwareAddr, mtu int) string {
	s := ""
	if mac != nil {
		s += " address " + mac.String()
	}
	if mtu > 0 {
		s += fmt.Sprintf(" mtu %d", mtu)
	}
	return s
}

func mtuOr(mtu int) int {
	if mtu == 0 {
		return 1500
	}
	return mtu
}

// dropLink removes a link from the model, with its veth peer.
func (r *Recorder) dropLink(key [2]string) {
	if l, ok := r.links[key]; ok {
		delete(r.links, key)
		delete(r.shapes, key)
		delete(r.shapes, l.peer)
		r.dropRoutes(key[0], key[1])
		if l.peer != ([2]string{}) {
			delete(r.links, l.peer)
			r.dropRoutes(l.peer[0], l.peer[1])
		}
	}
}

func (r *Recorder) get(ns, name string) (*LinkInfo, error) {
	if err := r.hasNS(ns); err != nil {
		return nil, err
	}
	l, ok := r.links[[2]string{ns, name}]
	if !ok && ns == Host && r.Real != nil {
		// A link of the machine's: seen, and kept in the model from now.
		if info, found := r.realHostLink(name); found {
			r.links[[2]string{ns, name}] = &info
			return &info, nil
		}
	}
	if !ok {
		return nil, fmt.Errorf("link %q in netns %q: %w", name, NSArg(ns), ErrNotFound)
	}
	return l, nil
}

// realHostLink looks a link of the machine up: in one listing of the host's
// links, read at the first question (one request, not one per name), or
// by name if the real kernel cannot list.
func (r *Recorder) realHostLink(name string) (LinkInfo, bool) {
	if r.realHost == nil {
		r.realHost = map[string]LinkInfo{}
		lister, ok := As[LinkLister](r.Real)
		links, err := []LinkInfo(nil), errors.New("cannot list")
		if ok {
			links, err = lister.Links(Host)
		}
		if err != nil {
			r.realHost = nil
			info, err := r.Real.LinkGet(Host, name)
			return info, err == nil
		}
		for _, l := range links {
			r.realHost[l.Name] = l
		}
	}
	info, ok := r.realHost[name]
	return info, ok
}

// exists reports whether a link of that name is in the model (or, in the
// host namespace, in the real kernel).
func (r *Recorder) exists(ns, name string) bool {
	_, err := r.get(ns, name)
	return err == nil
}

func (r *Recorder) LinkGet(ns, name string) (LinkInfo, error) {
	l, err := r.get(ns, name)
	if err != nil {
		return LinkInfo{}, err
	}
	return *l, nil
}

func (r *Recorder) LinkDel(ns, name string, fp Fingerprint) error {
	l, err := r.get(ns, name)
	if err != nil {
		return nil
	}
	if !fp.Matches(l.Alias, l.MAC) {
		return fmt.Errorf("link %q in netns %q: %w", name, NSArg(ns), ErrNotOurs)
	}
	if err := r.change("%s link del %s", ipn(ns), name); err != nil {
		return err
	}
	r.dropLink([2]string{ns, name})
	return nil
}

func (r *Recorder) set(ns, name, what string, apply func(*LinkInfo)) error {
	l, err := r.get(ns, name)
	if err != nil {
		return err
	}
	if err := r.change("%s link set %s %s", ipn(ns), name, what); err != nil {
		return err
	}
	apply(l)
	return nil
}

func (r *Recorder) LinkSetUp(ns, name string, up bool) error {
	state := map[bool]string{true: "up", false: "down"}[up]
	if !up {
		// The kernel takes the IPv4 routes through a link down with it (and
		// gives back only its addresses' when it is up again): the model
		// forgets them all, so that it never finds a route twice that the
		// kernel would have once.
		r.dropRoutes(ns, name)
	}
	return r.set(ns, name, state, func(l *LinkInfo) { l.Up = up })
}

func (r *Recorder) LinkSetMaster(ns, name, master string) error {
	if master == "" {
		return r.set(ns, name, "nomaster", func(l *LinkInfo) { l.Master = "" })
	}
	m, err := r.get(ns, master)
	if err != nil {
		return err
	}
	if m.Kind == "bridge" {
		// Counting the ports is a scan of the model: done only once the
		// bridge has been given BridgePorts ports in all (an upper bound).
		key := [2]string{ns, master}
		if r.given == nil {
			r.given = map[[2]string]int{}
		}
		if r.given[key]++; r.given[key] > BridgePorts {
			ports := 0
			for k, l := range r.links {
				if k[0] == ns && l.Master == master && k[1] != name {
					ports++
				}
			}
			if ports >= BridgePorts {
				return fmt.Errorf("bridge %q cannot take another port: %w", master, ErrBridgeFull)
			}
		}
	}
	return r.set(ns, name, "master "+master, func(l *LinkInfo) { l.Master = master })
}

func (r *Recorder) LinkSetMTU(ns, name string, mtu int) error {
	return r.set(ns, name, fmt.Sprintf("mtu %d", mtu), func(l *LinkInfo) { l.MTU = mtu })
}

func (r *Recorder) LinkSetMAC(ns, name string, mac net.HardwareAddr) error {
	return r.set(ns, name, "address "+mac.String(), func(l *LinkInfo) { l.MAC = mac.String() })
}

func (r *Recorder) LinkSetHairpin(ns, name string, on bool) error {
	if _, err := r.get(ns, name); err != nil {
		return err
	}
	state := map[bool]string{true: "on", false: "off"}[on]
	prefix := "bridge"
	if ns != Host {
		prefix = "bridge -n " + ns
	}
	return r.change("%s link set dev %s hairpin %s", prefix, name, state)
}

func (r *Recorder) LinkSetAlias(ns, name, alias string) error {
	l, err := r.get(ns, name)
	if err != nil {
		return err
	}
	l.Alias = alias // a tag, not a change a user asked for: not logged
	return nil
}

func (r *Recorder) LinkMove(ns, name, to string) error {
	l, err := r.get(ns, name)
	if err != nil {
		return err
	}
	if err := r.hasNS(to); err != nil {
		return err
	}
	if _, ok := r.links[[2]string{to, name}]; ok {
		return unix.EEXIST
	}
	if err := r.change("%s link set %s netns %s", ipn(ns), name, nsRef(to)); err != nil {
		return err
	}
	delete(r.links, [2]string{ns, name})
	r.dropRoutes(ns, name)
	l.NS, l.Master, l.Up, l.addrs = to, "", false, nil // as the kernel has it: a moved link is down, without addresses
	r.links[[2]string{to, name}] = l
	if l.peer != ([2]string{}) {
		r.links[l.peer].peer = [2]string{to, name}
	}
	for _, c := range r.links { // links stacked on it follow it
		if c.parent == [2]string{ns, name} {
			c.parent[0] = to
		}
	}
	return nil
}

// The sysctls that turn IPv6 off in a namespace: on its links, and on those
// it gets later.
const (
	ipv6Off        = "net.ipv6.conf.all.disable_ipv6"
	ipv6OffDefault = "net.ipv6.conf.default.disable_ipv6"
)

// noIPv6 refuses IPv6 in a namespace that has it off, as the kernel would.
func (r *Recorder) noIPv6(ns string, v6 bool) error {
	if v6 && r.sysctl[[2]string{ns, ipv6Off}] == "1" {
		return fmt.Errorf("IPv6 is off in netns %q (%s = 1)", NSArg(ns), ipv6Off)
	}
	return nil
}

func (r *Recorder) AddrAdd(ns, dev string, p netip.Prefix) error {
	l, err := r.get(ns, dev)
	if err != nil {
		return err
	}
	if err := r.noIPv6(ns, p.Addr().Is6()); err != nil {
		return err
	}
	if slices.Contains(l.addrs, p) {
		return unix.EEXIST
	}
	// As the kernel is asked (see Netlink.addrAdd): IPv6 without DAD, IPv4
	// with its broadcast address.
	opts := ""
	switch {
	case p.Addr().Is6():
		opts = " nodad"
	case p.Bits() < 31:
		opts = " brd +"
	}
	if err := r.change("%s addr add %s dev %s%s", ipn(ns), p, dev, opts); err != nil {
		return err
	}
	l.addrs = append(l.addrs, p)
	if p.Bits() < p.Addr().BitLen() { // the kernel's route to the address's subnet
		r.addRoute(ns, prefixRoute(dev, p))
	}
	return nil
}

// prefixRoute is the route the kernel adds for an address's subnet: metric
// 0 and the address as its source for IPv4, metric 256 for IPv6.
func prefixRoute(dev string, p netip.Prefix) recRoute {
	rt := recRoute{RouteKey: RouteKey{Family: 4, Table: MainTable, Dst: p.Masked()}, dev: dev, proto: "kernel", typ: "unicast", src: p.Addr()}
	if p.Addr().Is6() {
		rt.Family, rt.Metric, rt.src = 6, 256, netip.Addr{}
	}
	return rt
}

func (r *Recorder) addRoute(ns string, rt recRoute) { r.routes[ns] = append(r.routes[ns], rt) }

// dropRoutes forgets the routes through a device that went away (or down).
func (r *Recorder) dropRoutes(ns, dev string) {
	r.routes[ns] = slices.DeleteFunc(r.routes[ns], func(rt recRoute) bool { return rt.dev == dev })
}

func (r *Recorder) AddrDel(ns, dev string, p netip.Prefix) error {
	l, err := r.get(ns, dev)
	if err != nil {
		return nil
	}
	if err := r.change("%s addr del %s dev %s", ipn(ns), p, dev); err != nil {
		return err
	}
	l.addrs = slices.DeleteFunc(l.addrs, func(q netip.Prefix) bool { return q == p })
	pr := prefixRoute(dev, p)
	r.routes[ns] = slices.DeleteFunc(r.routes[ns], func(have recRoute) bool { return have == pr })
	return nil
}

// routable checks what the kernel would of a route to add: its namespace,
// its device, IPv6 there.
func (r *Recorder) routable(ns string, rt Route) error {
	if err := r.hasNS(ns); err != nil {
		return err
	}
	if rt.Dev != "" {
		if _, err := r.get(ns, rt.Dev); err != nil {
			return err
		}
	}
	return r.noIPv6(ns, rt.Family == 6)
}

func (r *Recorder) RouteAdd(ns string, rt Route) error {
	if err := r.routable(ns, rt); err != nil {
		return err
	}
	key := rt.Key()
	for _, have := range r.routes[ns] {
		if have.RouteKey == key {
			return unix.EEXIST // as the kernel has it: one route per destination and metric
		}
	}
	if err := r.change("%s route add %s", ipn(ns), routeArg(rt)); err != nil {
		return err
	}
	r.addRoute(ns, recRouteOf(rt))
	return nil
}

// recRouteOf is route rt in the model.
func recRouteOf(rt Route) recRoute {
	proto := "nsrun"
	if rt.Protocol() == unix.RTPROT_DHCP {
		proto = "dhcp"
	}
	typ := rt.Type
	if typ == "" {
		typ = "unicast"
	}
	return recRoute{RouteKey: rt.Key(), dev: rt.Dev, via: rt.Via, proto: proto, typ: typ, src: rt.Src}
}

func (r *Recorder) RouteReplace(ns string, rt Route) error {
	if err := r.routable(ns, rt); err != nil {
		return err
	}
	if err := r.change("%s route replace %s", ipn(ns), routeArg(rt)); err != nil {
		return err
	}
	key := rt.Key()
	r.routes[ns] = slices.DeleteFunc(r.routes[ns], func(have recRoute) bool { return have.RouteKey == key })
	r.addRoute(ns, recRouteOf(rt))
	return nil
}

func (r *Recorder) RouteDel(ns string, rt Route) error {
	if r.hasNS(ns) != nil {
		return nil
	}
	key := rt.Key()
	r.routes[ns] = slices.DeleteFunc(r.routes[ns], func(have recRoute) bool { return have.RouteKey == key })
	return r.change("%s route del %s", ipn(ns), routeArg(rt))
}

func (r *Recorder) SysctlGet(ns, key string) (string, error) {
	if err := r.hasNS(ns); err != nil {
		return "", err
	}
	if v, ok := r.sysctl[[2]string{ns, key}]; ok {
		return v, nil
	}
	return "0", nil
}

func (r *Recorder) SysctlSet(ns, key, value string) error {
	if err := r.hasNS(ns); err != nil {
		return err
	}
	prefix := "sysctl"
	if ns != Host {
		prefix = "ip netns exec " + ns + " sysctl"
		if sc, ok := As[SysctlScoper](r.Real); ok {
			if err := sc.NetnsSysctl(key); err != nil {
				return err
			}
		}
	}
	if err := r.change("%s -qw %s", prefix, quoteArg(key+"="+value)); err != nil {
		return err
	}
	r.sysctl[[2]string{ns, key}] = value
	return nil
}

// Observed is set once the run has asked the network something (started a
// command, pinged...): what a recording kernel answers is made up, so what
// the recipe does after it is not a prediction of the real run.
func (r *Recorder) Observe() { r.Observed = true }

// Note records, as a comment in the log, a command the run would make that
// a plan does not: its output is made up.
func (r *Recorder) Note(cmd string) {
	if !r.Quiet {
		r.Log = append(r.Log, "# "+cmd)
	}
}

func (r *Recorder) Start(ns string, cmd *exec.Cmd) error {
	r.Observe()
	prefix := ""
	if ns != Host {
		prefix = "ip netns exec " + ns + " "
	}
	r.Note(prefix + ShellQuote(cmd.Args[1:]))
	return nil
}

func (r *Recorder) Settle(string, []NamedLink) error { return nil }
func (r *Recorder) Close() error                     { return nil }

func peerAlias(s LinkSpec) string {
	if s.PeerUntagged {
		return ""
	}
	return s.Alias
}

// routeArg renders a route as `ip route add` takes it, with its protocol.
func routeArg(rt Route) string {
	if rt.Proto != 0 {
		return rt.String()
	}
	return rt.String() + " proto " + rt.ProtoArg()
}
