package kernel

import (
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Requests the netlink library does not make: a veth created with
// NLM_F_ECHO, whose answer gives both ends' indexes (the library looks the
// new link up by name instead, and nothing tells it the peer's), and one
// request that tags a link and brings it up. They go over a socket of our
// own in each namespace, next to the library's handle.

// sock returns the namespace's own rtnetlink socket, opened on first use.
func (k *Netlink) sock(ns string) (*nl.SocketHandle, error) {
	k.mu.Lock()
	s, ok := k.socks[ns]
	k.mu.Unlock()
	if ok {
		return s, nil
	}
	at, back := netns.None(), netns.None()
	if ns != Host {
		var err error
		if at, err = k.fd(ns); err != nil {
			return nil, err
		}
		if back, err = k.fd(Host); err != nil {
			return nil, err
		}
	}
	ns_, err := nl.GetNetlinkSocketAt(at, back, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket for netns %q: %w", NSArg(ns), err)
	}
	return k.keepSock(ns, ns_), nil
}

// keepSock records s as ns's own socket.
func (k *Netlink) keepSock(ns string, s *nl.NetlinkSocket) *nl.SocketHandle {
	sh := &nl.SocketHandle{Socket: s}
	k.mu.Lock()
	if old, ok := k.socks[ns]; ok {
		old.Close()
	}
	k.socks[ns] = sh
	k.mu.Unlock()
	return sh
}

// request starts a request that goes over ns's own socket.
func (k *Netlink) request(ns string, typ, flags int) (*nl.NetlinkRequest, error) {
	s, err := k.sock(ns)
	if err != nil {
		return nil, err
	}
	req := nl.NewNetlinkRequest(typ, flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: s}
	return req, nil
}

// vethAdd creates the veth pair s in s.NS (its peer in the namespace open at
// peer) and returns the indexes of both ends, or 0 where the kernel did not
// echo the new link (before Linux 6.3).
//
// Equivalent to: ip link add $name [address $mac] [mtu $mtu] [group $g]
// type veth peer name $peer [address $peermac] netns $peerns
func (k *Netlink) vethAdd(s LinkSpec, peer netns.NsHandle) (index, peerIndex int, err error) {
	req, err := k.request(s.NS, unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK|unix.NLM_F_ECHO)
	if err != nil {
		return 0, 0, err
	}
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

	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range msgs {
		if len(m) < unix.SizeofIfInfomsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			continue
		}
		for _, a := range attrs {
			if a.Attr.Type == unix.IFLA_LINK && len(a.Value) == 4 {
				peerIndex = int(nl.NativeEndian().Uint32(a.Value))
			}
		}
		return int(nl.DeserializeIfInfomsg(m).Index), peerIndex, nil
	}
	return 0, 0, nil
}

// tagUp sets the alias of link index of ns and, if up, brings it up, in
// one request.
//
// Equivalent to: ip -n $ns link set dev $dev alias $tag [up]
func (k *Netlink) tagUp(ns string, index int, tag string, up bool) error {
	req, err := k.request(ns, unix.RTM_SETLINK, unix.NLM_F_ACK)
	if err != nil {
		return err
	}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	if up {
		msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(tag)))
	_, err = req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
