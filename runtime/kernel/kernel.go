package kernel

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Host names the namespace nsrun runs in.
const Host = ""

// RouteProtocol marks the routes nsrun adds (see /etc/iproute2/rt_protos),
// so an undo removes only a route of its own.
const RouteProtocol = 0x4e // 'N'

// ErrNotFound is returned when a link, namespace or route does not exist.
var ErrNotFound = errors.New("not found")

// ErrNotOurs is returned when an undo finds, in an object's place, something
// that does not match what the lab created: it is left alone.
var ErrNotOurs = errors.New("not created by this lab")

// NetnsSpec is a namespace to create.
type NetnsSpec struct {
	Name string
	Tag  string // lo's alias: the lab's ownership mark
	LoUp bool   // lo is brought up, in the request that tags it
	// NoIPv6 turns IPv6 off in the namespace before anything is in it:
	// net.ipv6.conf.all.disable_ipv6 and .default.disable_ipv6 are 1, so
	// its links, lo included, have no IPv6 (no link-local address, no
	// duplicate address detection, no router solicitation, no MLD).
	NoIPv6 bool
}

// Kernel makes and inspects the objects of a lab.
type Kernel interface {
	// NetnsAdd creates a namespace whose lo carries the alias s.Tag before
	// the namespace is pinned under its name: a namespace of a lab is
	// recognisable even if the run died before it recorded the inode. It
	// returns what identifies the namespace and its pin.
	NetnsAdd(s NetnsSpec) (NetnsID, error)
	// NetnsDel removes the namespace only if it is still the lab's: its
	// inode is id.Ino (if known) and its lo carries tag, which is never
	// empty. A pin file no namespace is bound to is removed only if it is
	// the one the lab made (id.Pin), or if the namespace was never known
	// made (id.Ino 0: the run died between the pin and the binding).
	NetnsDel(name, tag string, id NetnsID) error
	NetnsExists(name string) (bool, error)

	LinkAdd(s LinkSpec) error
	LinkGet(ns, name string) (LinkInfo, error)
	// LinkDel deletes the link only if it still matches fp.
	LinkDel(ns, name string, fp Fingerprint) error
	LinkSetUp(ns, name string, up bool) error
	LinkSetMaster(ns, name, master string) error // master "" detaches
	LinkSetMTU(ns, name string, mtu int) error
	LinkSetMAC(ns, name string, mac net.HardwareAddr) error
	LinkSetAlias(ns, name, alias string) error
	LinkSetHairpin(ns, name string, on bool) error // a bridge port's hairpin mode
	LinkMove(ns, name, to string) error

	AddrAdd(ns, dev string, p netip.Prefix) error
	AddrDel(ns, dev string, p netip.Prefix) error
	RouteAdd(ns string, r Route) error
	RouteDel(ns string, r Route) error
	// RouteReplace puts r in the place of the route with its key (see
	// RouteKey), in one change; with none there, it adds r.
	RouteReplace(ns string, r Route) error

	SysctlGet(ns, key string) (string, error)
	SysctlSet(ns, key, value string) error

	// Start starts cmd (from nsexec.Command) inside ns.
	Start(ns string, cmd *exec.Cmd) error

	// Settle waits until links that die with deleted namespaces (the
	// host ends of their veths) are gone. A link of that name that does
	// not match its fingerprint is someone else's: it is not waited for.
	Settle(ns string, links []NamedLink) error
	Close() error
}

// Fingerprint identifies a link of a lab: its tag (alias) or, on a link the
// run created but died before tagging, the MAC it was given.
type Fingerprint struct {
	Alias string
	MAC   string
}

// Matches reports whether a link with alias and mac is the one fp names:
// its alias is fp's, or it has none and its MAC is fp's. An empty alias
// never matches an empty tag: an untagged link is a lab's only by its MAC.
func (fp Fingerprint) Matches(alias, mac string) bool {
	if alias != "" {
		return alias == fp.Alias
	}
	return fp.MAC != "" && mac == fp.MAC
}

// NamedLink is a link of a lab, by name and fingerprint.
type NamedLink struct {
	Name string
	Fingerprint
}

// NetnsID identifies a namespace a lab made, and its pin.
type NetnsID struct {
	Ino uint64 // the namespace's inode: unique while it lives
	// Mnt is the unique id of its pin's mount (0 if the kernel has none,
	// see nsexec.MountID).
	Mnt uint64
	// Pin is the inode of the pin file under the mount, on the pins'
	// filesystem: it names the file left if a deletion is cut short
	// between the unmount and the unlink.
	Pin uint64
}

// LinkSpec describes a link to create. The link is created directly in NS;
// a veth's peer directly in PeerNS; a macvlan or vlan on Parent in ParentNS.
type LinkSpec struct {
	NS    string
	Name  string
	Kind  string // veth, bridge, macvlan, macvtap, vxlan, dummy, vlan
	MAC   net.HardwareAddr
	MTU   int
	Alias string

	PeerName string
	PeerNS   string
	PeerMAC  net.HardwareAddr
	// Group is the device group the link is created in (see GroupOf); 0:
	// the default.
	Group uint32
	// PeerUntagged leaves a veth's peer without the tag: it is born in a
	// namespace of the lab's, whose own tag vouches for what is in it.
	PeerUntagged bool

	Parent   string
	ParentNS string
	Mode     string // macvlan: private, vepa, bridge, passthru
	VlanID   int

	// A vxlan's: its VNI, the address it sends from (Local), the one it
	// sends to (Remote: a VTEP, or a multicast group), its UDP port
	// (0: 4789), and whether it learns where MACs are from what it
	// receives. Parent, in NS, is the link it sends by.
	VNI        int
	Local      netip.Addr
	Remote     netip.Addr
	Port       int
	NoLearning bool
	// SocketHost makes a vxlan in NS whose UDP socket is the host
	// namespace's: a link of a lab across machines, sent over the
	// machine's own network (the underlay).
	SocketHost bool

	// A bridge's spanning tree: STP on, and its forward delay in
	// centiseconds (0: the kernel's, 15 s), as `ip link` takes it.
	STP          bool
	ForwardDelay int
}

// LinkInfo is what the kernel says of a link.
type LinkInfo struct {
	NS     string
	Name   string
	Kind   string
	Index  int
	MAC    string
	MTU    int
	Up     bool
	Master string
	Alias  string
	// Oper is the operational state as the kernel reports it: "up",
	// "down", "lowerlayerdown" (a veth whose peer is down), "unknown"
	// (lo, and kinds without a carrier); "" from a recording kernel.
	Oper string
	// Carrier: the link has a carrier (IFF_LOWER_UP), which the kernel
	// sets at once; Oper follows it later (see engine.Operational).
	Carrier bool

	// kept by Recorder only
	peer   [2]string // a veth's other end
	parent [2]string // a macvlan's, macvtap's or vlan's parent
	mode   string    // a macvlan's mode, a vlan's id
	addrs  []netip.Prefix
}

// Route is a route of a namespace, in its main table unless Table says
// otherwise. A zero Dst is the default route of Family (4 or 6).
type Route struct {
	Dst    netip.Prefix
	Family int
	Via    netip.Addr
	Dev    string
	Metric int
	// Proto is who the route is said to come from: 0 for nsrun itself
	// (RouteProtocol), unix.RTPROT_DHCP for a lease's.
	Proto int `json:",omitempty"`
	// Table is the routing table (1 to 2^32-1 but local's 255); 0 is
	// main (254).
	Table int `json:",omitempty"`
	// Type is what the route does with a packet: "" (unicast) forwards
	// it; "blackhole" drops it silently, "unreachable" and "prohibit"
	// drop it with an ICMP error (host unreachable, administratively
	// prohibited).
	Type string `json:",omitempty"`
	// Src is the source address the namespace prefers for packets the
	// route sends (ip route ... src).
	Src netip.Addr `json:",omitzero"`
}

// The types of route a recipe may ask for, by name (see Route.Type).
var RouteTypes = map[string]uint8{
	"unicast": unix.RTN_UNICAST, "blackhole": unix.RTN_BLACKHOLE,
	"unreachable": unix.RTN_UNREACHABLE, "prohibit": unix.RTN_PROHIBIT,
}

// MainTable is the kernel's number of the main routing table.
const MainTable = unix.RT_TABLE_MAIN

// TableOf is the table a route is in, as the kernel numbers it.
func (r Route) TableOf() int {
	if r.Table == 0 {
		return MainTable
	}
	return r.Table
}

// A RouteKey is what makes two routes one to the kernel: a table holds one
// route per family, destination and metric.
type RouteKey struct {
	Family int
	Table  int          // as the kernel numbers it: main is 254
	Dst    netip.Prefix // masked; invalid for a default route
	Metric int          // as the kernel has it: IPv6's 0 is 1024
}

// Key returns the route's key.
func (r Route) Key() RouteKey {
	fam := r.Family
	if fam == 0 {
		fam = 4
		if r.Dst.IsValid() && r.Dst.Addr().Is6() || r.Via.Is6() {
			fam = 6
		}
	}
	m := r.Metric
	if fam == 6 && m == 0 {
		m = 1024
	}
	var dst netip.Prefix
	if r.Dst.IsValid() && r.Dst.Bits() > 0 {
		dst = r.Dst.Masked()
	}
	return RouteKey{fam, r.TableOf(), dst, m}
}

// Protocol is the route's protocol as the kernel is told it.
func (r Route) Protocol() int {
	if r.Proto == 0 {
		return RouteProtocol
	}
	return r.Proto
}

// ProtoArg renders the route's protocol as `ip route add ... proto` takes
// it (iproute2 has no name for nsrun's own).
func (r Route) ProtoArg() string {
	if r.Protocol() == unix.RTPROT_DHCP {
		return "dhcp"
	}
	return fmt.Sprint(r.Protocol())
}

// String renders the route as `ip route` shows it.
func (r Route) String() string {
	s := "default"
	if r.Dst.IsValid() {
		s = r.Dst.String()
	}
	if r.Type != "" && r.Type != "unicast" {
		s = r.Type + " " + s
	}
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	if r.Table != 0 {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	if r.Src.IsValid() {
		s += " src " + r.Src.String()
	}
	if r.Proto != 0 {
		s += " proto " + r.ProtoArg()
	}
	return s
}

// NSArg renders a namespace for messages and iproute2 commands.
func NSArg(ns string) string {
	if ns == Host {
		return "host"
	}
	return ns
}

// GroupOf is the device group of the links a lab with that tag creates
// outside its own namespaces: LinkDelGroup deletes them in one request.
// Its high byte is 'n'; the rest is a hash of the tag.
func GroupOf(tag string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(tag))
	return 0x6e000000 | h.Sum32()&0xffffff
}

// BridgePorts is the most ports a Linux bridge takes (its port numbers are
// ten bits, 0 reserved).
const BridgePorts = 1023

// ErrBridgeFull is the error of a port too many.
var ErrBridgeFull = errors.New("a Linux bridge holds at most 1023 ports (the standard library's lan() spreads more hosts over several bridges)")

// VxlanPort is the IANA port of VXLAN, a vxlan's by default.
const VxlanPort = 4789

// VxlanArgs renders a vxlan's settings as `ip link add ... type vxlan`
// takes them (but its parent, dev): "id 42 remote 10.0.0.2 dstport 4789".
// They are what makes a vxlan of the lab's the one it is (see
// journal.Step.Mode); ParseVxlanArgs reads them back.
func (s LinkSpec) VxlanArgs() string {
	args := fmt.Sprintf("id %d", s.VNI)
	if s.Remote.IsValid() {
		if s.Remote.IsMulticast() {
			args += " group " + s.Remote.String()
		} else {
			args += " remote " + s.Remote.String()
		}
	}
	if s.Local.IsValid() {
		args += " local " + s.Local.String()
	}
	port := s.Port
	if port == 0 {
		port = VxlanPort
	}
	args += fmt.Sprintf(" dstport %d", port)
	if s.NoLearning {
		args += " nolearning"
	}
	return args
}

// BridgeArgs renders a bridge's settings as `ip link add ... type bridge`
// takes them ("stp_state 1 forward_delay 200"; "" for a plain bridge):
// what makes a bridge of the lab's the one it is (see journal.Step.Mode);
// ParseBridgeArgs reads them back.
func (s LinkSpec) BridgeArgs() string {
	if !s.STP {
		return ""
	}
	args := "stp_state 1"
	if s.ForwardDelay > 0 {
		args += fmt.Sprintf(" forward_delay %d", s.ForwardDelay)
	}
	return args
}

// ParseBridgeArgs sets s's bridge settings from args, as BridgeArgs
// renders them.
func ParseBridgeArgs(args string, s *LinkSpec) error {
	f := strings.Fields(args)
	for i := 0; i+1 < len(f); i += 2 {
		v, err := strconv.Atoi(f[i+1])
		if err != nil {
			return fmt.Errorf("bridge settings %q: %w", args, err)
		}
		switch f[i] {
		case "stp_state":
			s.STP = v == 1
		case "forward_delay":
			s.ForwardDelay = v
		default:
			return fmt.Errorf("bridge settings %q: unknown setting %q", args, f[i])
		}
	}
	if len(f)%2 != 0 {
		return fmt.Errorf("bridge settings %q: %s has no value", args, f[len(f)-1])
	}
	return nil
}

// ParseVxlanArgs sets s's vxlan settings from args, as VxlanArgs renders
// them.
func ParseVxlanArgs(args string, s *LinkSpec) error {
	f := strings.Fields(args)
	for i := 0; i < len(f); i++ {
		if f[i] == "nolearning" {
			s.NoLearning = true
			continue
		}
		if i+1 == len(f) {
			return fmt.Errorf("vxlan settings %q: %s has no value", args, f[i])
		}
		v := f[i+1]
		i++
		var err error
		switch f[i-1] {
		case "id":
			s.VNI, err = strconv.Atoi(v)
		case "remote", "group":
			s.Remote, err = netip.ParseAddr(v)
		case "local":
			s.Local, err = netip.ParseAddr(v)
		case "dstport":
			s.Port, err = strconv.Atoi(v)
		default:
			err = fmt.Errorf("unknown setting %q", f[i-1])
		}
		if err != nil {
			return fmt.Errorf("vxlan settings %q: %w", args, err)
		}
	}
	return nil
}
