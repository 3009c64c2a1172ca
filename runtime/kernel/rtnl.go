package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The requests of a lab's hot path — a veth, a port, an address, a link up,
// a tag — go over a route netlink socket of our own in each namespace
// (the library's handle is opened only for the rest): a blocking socket,
// read into buffers all the sockets share.
// The library's socket costs more per request: a 64 KiB buffer allocated
// and cleared for every answer, the runtime's poller, and a getsockname
// call. And a veth is made with NLM_F_ECHO, whose answer gives both ends'
// indexes, where the library looks the new link up by name and knows
// nothing of the peer.

// An rtnl is a route netlink socket of our own.
type rtnl struct {
	mu  sync.Mutex // one request at a time
	fd  int
	seq uint32
}

// answerBufs holds the buffers answers are read into, shared by all the
// sockets: a lab has one socket a namespace, and a buffer of each socket's
// own would be fresh memory for the kernel to fault in at its first answer.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// openRtnl opens a route netlink socket in the calling thread's namespace.
func openRtnl() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	// Acknowledgements without a copy of the request.
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	return &rtnl{fd: fd}, nil
}

func (s *rtnl) Close() error { return unix.Close(s.fd) }

// do sends req with NLM_F_ACK and waits for the kernel's acknowledgement,
// returning its error, and the body of the first answer of type want
// (0: none), copied.
func (s *rtnl) do(req *nl.NetlinkRequest, want uint16) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	req.Seq = s.seq
	req.Flags |= unix.NLM_F_ACK
	msg := req.Serialize()
	for {
		err := unix.Sendto(s.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == nil {
			break
		}
		if err != unix.EINTR {
			return nil, err
		}
	}
	bp := answerBufs.Get().(*[]byte)
	defer answerBufs.Put(bp)
	buf := *bp
	var answer []byte
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != s.seq {
				continue // left from an earlier request that failed midway
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("netlink: short acknowledgement")
				}
				if errno := int32(nl.NativeEndian().Uint32(m.Data)); errno != 0 {
					return nil, unix.Errno(-errno)
				}
				return answer, nil
			case want:
				if answer == nil {
					answer = append([]byte(nil), m.Data...)
				}
			}
		}
	}
}

// sock returns the namespace's own socket, opened on first use.
func (k *Netlink) sock(ns string) (*rtnl, error) {
	k.mu.Lock()
	k.used(ns)
	s, ok := k.socks[ns]
	k.mu.Unlock()
	if ok {
		return s, nil
	}
	var err error
	if ns == Host {
		s, err = openRtnl()
	} else {
		// Entered by the descriptor (which fd knows for the namespace the
		// run opened first), not by the name: the same namespace.
		var fd netns.NsHandle
		if fd, err = k.fd(ns); err != nil {
			return nil, err
		}
		err = nsexec.Do(fmt.Sprintf("/proc/self/fd/%d", fd), func() (err error) { s, err = openRtnl(); return err })
	}
	if err != nil {
		return nil, fmt.Errorf("netns %q: %w", NSArg(ns), err)
	}
	k.keepSock(ns, s)
	return s, nil
}

// keepSock records s as ns's own socket.
func (k *Netlink) keepSock(ns string, s *rtnl) {
	k.mu.Lock()
	if old, ok := k.socks[ns]; ok {
		old.Close()
	}
	k.used(ns)
	k.socks[ns] = s
	k.mu.Unlock()
}

// request sends req over ns's own socket (see rtnl.do).
func (k *Netlink) request(ns string, req *nl.NetlinkRequest, want uint16) ([]byte, error) {
	s, err := k.sock(ns)
	if err != nil {
		return nil, err
	}
	return s.do(req, want)
}

// newLinkRequest is the request that creates link s (its name, MAC, MTU
// and group), answered with the new link (NLM_F_ECHO); the caller adds
// its kind's IFLA_LINKINFO.
func newLinkRequest(s LinkSpec) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ECHO)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.Name)))
	if s.MAC != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, s.MAC))
	}
	if s.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.MTU))))
	}
	if s.Group != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(s.Group)))
	}
	return req
}

// vethAdd creates the veth pair s in s.NS (its peer in the namespace open at
// peer) and returns the indexes of both ends, or 0 where the kernel did not
// echo the new link (before Linux 6.3). The echo gives the peer's index as
// IFLA_LINK, left out when it equals the link's own (both ends in new
// namespaces are often index 2).
//
// Equivalent to: ip link add $name [address $mac] [mtu $mtu] [group $g]
// type veth peer name $peer [address $peermac] netns $peerns
func (k *Netlink) vethAdd(s LinkSpec, peer netns.NsHandle) (index, peerIndex int, err error) {
	req := newLinkRequest(s)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	p := info.AddRtAttr(nl.IFLA_INFO_DATA, nil).AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(p, unix.AF_UNSPEC)
	p.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.PeerName))
	if s.PeerMAC != nil {
		p.AddRtAttr(unix.IFLA_ADDRESS, s.PeerMAC)
	}
	if s.MTU > 0 {
		p.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.MTU)))
	}
	p.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(peer)))
	req.AddData(info)

	m, err := k.request(s.NS, req, unix.RTM_NEWLINK)
	if err != nil || len(m) < unix.SizeofIfInfomsg {
		return 0, 0, err
	}
	index = int(nl.DeserializeIfInfomsg(m).Index)
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
	if err != nil {
		return index, 0, nil // the peer's index is looked up when needed
	}
	peerIndex = index
	for _, a := range attrs {
		if a.Attr.Type == unix.IFLA_LINK && len(a.Value) == 4 {
			peerIndex = int(nl.NativeEndian().Uint32(a.Value))
		}
	}
	return index, peerIndex, nil
}

// bridgeAdd creates the bridge s with its spanning tree settings, which
// the library does not make.
//
// Equivalent to: ip -n $ns link add $name [address $mac] [mtu $mtu]
// [group $g] type bridge stp_state 1 [forward_delay $d]
func (k *Netlink) bridgeAdd(s LinkSpec) error {
	req := newLinkRequest(s)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	if s.ForwardDelay > 0 { // before STP: the kernel checks the delay's range with STP on
		data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(uint32(s.ForwardDelay)))
	}
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(1))
	req.AddData(info)
	m, err := k.request(s.NS, req, unix.RTM_NEWLINK)
	if err != nil {
		return err
	}
	if len(m) >= unix.SizeofIfInfomsg {
		k.rememberLink(s.NS, s.Name, int(nl.DeserializeIfInfomsg(m).Index))
	}
	return nil
}

// setLink sets the alias (if not nil) and the up flag (if not nil) of link
// index of ns, in one request.
func (k *Netlink) setLink(ns string, index int, alias *string, up *bool) error {
	_, err := k.request(ns, setLinkRequest(index, alias, up), 0)
	return err
}

// setLinkRequest is the request of setLink.
//
// Equivalent to: ip -n $ns link set dev $dev [alias $alias] [up|down]
func setLinkRequest(index int, alias *string, up *bool) *nl.NetlinkRequest {
	typ := unix.RTM_NEWLINK // as ip link set does for flags
	if alias != nil {
		typ = unix.RTM_SETLINK
	}
	req := nl.NewNetlinkRequest(typ, 0)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	if up != nil {
		msg.Change = unix.IFF_UP
		if *up {
			msg.Flags = unix.IFF_UP
		}
	}
	req.AddData(msg)
	if alias != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(*alias)))
	}
	return req
}

// setMaster makes link index of ns a port of link master (0: of none).
//
// Equivalent to: ip -n $ns link set dev $dev master $master | nomaster
func (k *Netlink) setMaster(ns string, index, master int) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, 0)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
	_, err := k.request(ns, req, 0)
	return err
}

// addrAdd adds p to link index of ns; an IPv4 address of /30 or wider gets
// its broadcast address (not a /31: RFC 3021). An IPv6 address of a lab is usable at once: duplicate
// address detection would hold it back for a second or two (and the lab's
// addresses are its own).
//
// Equivalent to: ip -n $ns addr add $p [brd +] dev $dev [nodad]
func (k *Netlink) addrAdd(ns string, index int, p netip.Prefix) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	family := unix.AF_INET
	if p.Addr().Is6() {
		family = unix.AF_INET6
	}
	msg := nl.NewIfAddrmsg(family)
	msg.Index = uint32(index)
	msg.Prefixlen = uint8(p.Bits())
	if p.Addr().Is6() {
		msg.Flags = unix.IFA_F_NODAD
	}
	req.AddData(msg)
	local := p.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, local))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, local))
	if p.Addr().Is4() && p.Bits() < 31 {
		brd, mask := make([]byte, 4), net.CIDRMask(p.Bits(), 32)
		for i := range brd {
			brd[i] = local[i] | ^mask[i]
		}
		req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, brd))
	}
	_, err := k.request(ns, req, 0)
	return err
}
