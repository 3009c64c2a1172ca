// Command floor builds or tears down the benchmark's star lab (see
// bench/star.star) with the fewest netlink requests the work needs and
// nothing else: no recipe, no journal, no checks. It is the floor nsrun is
// measured against, so it takes every shortcut nsrun takes and those it
// does not: one route netlink socket of its own per namespace, opened in
// the namespace as it is made; lo known as index 1; each veth made with
// NLM_F_ECHO, whose answer gives both ends' indexes (no lookup by name);
// the host end made up and in the bridge by the same request.
//
//	floor -n 500 setup
//	floor -n 500 -v4 setup        # IPv6 off in the hosts, two IPv4 addresses (star.star N v4)
//	floor -n 500 teardown         # one request for the links, one unmount per namespace
//	floor -n 500 -each teardown   # the host's links deleted one by one
//	floor -n 10000 -per 250 -v4 setup  # hosts on bridges of 250 ports (br-star, br-star-1, ...)
//	floor -t ...                  # and print the time it took, from inside the process
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

const (
	dir     = "/run/netns"
	group   = 0x6e737275 // the lab's device group: teardown deletes it in one request
	loIndex = 1          // lo's index in every namespace
)

var (
	v4  bool
	per int // hosts a bridge; 0: all on br-star
)

func main() {
	n := flag.Int("n", 100, "hosts")
	each := flag.Bool("each", false, "teardown: delete the host's links one by one")
	nsOnly := flag.Bool("ns-only", false, "teardown: leave the host's links to the namespaces' deletion")
	timed := flag.Bool("t", false, "print the time the work took, measured inside the process")
	flag.BoolVar(&v4, "v4", false, "setup: IPv6 off in the hosts' namespaces, a second IPv4 address for the IPv6 one")
	flag.IntVar(&per, "per", 0, "hosts a bridge (br-star, br-star-1, ...): more than a bridge's 1,023 ports; 0: one bridge")
	flag.Parse()
	runtime.LockOSThread() // namespaces are entered on this thread only
	start := time.Now()
	host := openSock()
	switch flag.Arg(0) {
	case "setup":
		setup(host, *n)
	case "teardown":
		teardown(host, *n, *each, *nsOnly)
	default:
		fmt.Fprintln(os.Stderr, "usage: floor [-n N] [-v4] [-t] [-each|-ns-only] setup|teardown")
		os.Exit(2)
	}
	if *timed {
		fmt.Fprintf(os.Stderr, "floor: %s of %d hosts: %.1f ms\n", flag.Arg(0), *n, float64(time.Since(start).Microseconds())/1e3)
	}
}

func setup(host *sock, n int) {
	homeFD, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	check(err)
	br, _ := host.do(newLink("br-star", 0, "bridge", nil), true)
	for i := 0; i < n; i++ {
		if per > 0 && i > 0 && i%per == 0 {
			br, _ = host.do(newLink(bridgeName(i/per), 0, "bridge", nil), true)
		}
		name := fmt.Sprintf("h%d", i)
		nsFD, ns := newNamed(name, homeFD)
		ns.do(setUp(loIndex), false)
		// The host end up, in the bridge, in the lab's group; the peer
		// eth0 made in the namespace.
		req := newLink("v-"+name, br, "veth", func(info *nl.RtAttr) {
			data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
			peer := data.AddRtAttr(nl.VETH_INFO_PEER, nl.NewIfInfomsg(unix.AF_UNSPEC).Serialize())
			peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("eth0"))
			peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(nsFD)))
		})
		index, peer := host.do(req, true)
		if peer == 0 {
			peer = index // the echo leaves IFLA_LINK out when it equals the link's own
		}
		unix.Close(nsFD)
		a := i + 1
		ns.do(newAddr(peer, fmt.Sprintf("10.%d.%d.%d/8", a>>16, (a>>8)&255, a&255)), false)
		if v4 {
			ns.do(newAddr(peer, fmt.Sprintf("100.%d.%d.%d/10", 64+(a>>16), (a>>8)&255, a&255)), false)
		} else {
			ns.do(newAddr(peer, fmt.Sprintf("fd00::%x/64", a)), false)
		}
		ns.do(setUp(peer), false)
		ns.close()
	}
}

func teardown(host *sock, n int, each, nsOnly bool) {
	switch {
	case nsOnly:
	case each:
		for i := 0; i < n; i++ {
			host.do(delLink(fmt.Sprintf("v-h%d", i)), false)
		}
	default:
		req := nl.NewNetlinkRequest(unix.RTM_DELLINK, 0)
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
		host.do(req, false)
	}
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("h%d", i))
		check(unix.Unmount(p, unix.MNT_DETACH))
		check(os.Remove(p))
	}
	host.do(delLink("br-star"), false)
	for b := 1; per > 0 && b*per < n; b++ {
		host.do(delLink(bridgeName(b)), false)
	}
}

// bridgeName is the name of the lab's bridge b (0: br-star).
func bridgeName(b int) string {
	if b == 0 {
		return "br-star"
	}
	return fmt.Sprintf("br-star-%d", b)
}

// newNamed creates a namespace pinned at dir/name, as `ip netns add` does,
// and returns a descriptor of it and a socket opened in it; the thread is
// back home after.
func newNamed(name string, home int) (int, *sock) {
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	check(err)
	f.Close()
	check(unix.Unshare(unix.CLONE_NEWNET))
	if v4 {
		for _, conf := range []string{"all", "default"} {
			check(os.WriteFile("/proc/sys/net/ipv6/conf/"+conf+"/disable_ipv6", []byte("1"), 0))
		}
	}
	check(unix.Mount("/proc/thread-self/ns/net", p, "none", unix.MS_BIND, ""))
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	check(err)
	s := openSock()
	check(unix.Setns(home, unix.CLONE_NEWNET))
	return fd, s
}

// newLink is a request for a link of kind named name, made up (a port of
// master, if not 0, in the lab's group), with its kind's data from data.
func newLink(name string, master int, kind string, data func(info *nl.RtAttr)) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ECHO)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if master != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated(kind))
	if data != nil {
		data(info)
	}
	req.AddData(info)
	return req
}

func setUp(index int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, 0)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index, msg.Flags, msg.Change = int32(index), unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	return req
}

func delLink(name string) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, 0)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	return req
}

// newAddr is a request for address cidr on the link with that index; an
// IPv6 one without duplicate address detection, as nsrun's.
func newAddr(index int, cidr string) *nl.NetlinkRequest {
	p := netip.MustParsePrefix(cidr)
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	fam := unix.AF_INET
	if p.Addr().Is6() {
		fam = unix.AF_INET6
	}
	msg := nl.NewIfAddrmsg(fam)
	msg.Index, msg.Prefixlen = uint32(index), uint8(p.Bits())
	if p.Addr().Is6() {
		msg.Flags = unix.IFA_F_NODAD
	}
	req.AddData(msg)
	ip := p.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, ip))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, ip))
	return req
}

// sock is a route netlink socket of the floor's own, in the namespace it
// was opened in.
type sock struct {
	fd  int
	seq uint32
	buf []byte
}

func openSock() *sock {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	check(err)
	check(unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}))
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	return &sock{fd: fd, buf: make([]byte, 32<<10)}
}

func (s *sock) close() { unix.Close(s.fd) }

// do sends req and waits for the kernel's acknowledgement; with echo, it
// returns the index of the link the echoed RTM_NEWLINK names and its
// IFLA_LINK (a veth's peer).
func (s *sock) do(req *nl.NetlinkRequest, echo bool) (index, link int) {
	s.seq++
	req.Seq = s.seq
	req.Flags |= unix.NLM_F_ACK
	check(unix.Sendto(s.fd, req.Serialize(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}))
	for {
		n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
		check(err)
		msgs, err := syscall.ParseNetlinkMessage(s.buf[:n])
		check(err)
		for _, m := range msgs {
			switch {
			case m.Header.Seq != s.seq:
			case m.Header.Type == unix.NLMSG_ERROR:
				if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
					check(fmt.Errorf("netlink: %w", unix.Errno(-code)))
				}
				return index, link
			case echo && m.Header.Type == unix.RTM_NEWLINK && len(m.Data) >= unix.SizeofIfInfomsg:
				index = int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))
				attrs, err := nl.ParseRouteAttr(m.Data[unix.SizeofIfInfomsg:])
				check(err)
				for _, a := range attrs {
					if a.Attr.Type == unix.IFLA_LINK && len(a.Value) == 4 {
						link = int(binary.NativeEndian.Uint32(a.Value))
					}
				}
			}
		}
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}
