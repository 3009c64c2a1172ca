package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Server answers DHCPv4 requests for one link. It is deterministic: clients
// get addresses from the pool in the order they first ask, each keeps its
// address (by MAC) for the server's lifetime, and since nsrun gives links the
// same MACs on every run, a recipe that starts its clients in the same order
// gets the same addresses.
type Server struct {
	cfg    Config
	id     netip.Addr   // the server's own address: its identifier
	subnet netip.Prefix // what clients are told the netmask is

	mu    sync.Mutex
	byMAC map[string]netip.Addr
	used  map[netip.Addr]bool
}

// NewServer returns a server identified by its address id on the link, in
// subnet, which must hold the pool.
func NewServer(cfg Config, id netip.Addr, subnet netip.Prefix) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.checkSubnet(subnet); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, id: id, subnet: subnet, byMAC: map[string]netip.Addr{}, used: map[netip.Addr]bool{}}, nil
}

// allocate returns the client's address, giving it the first free one of the
// pool if it has none yet. The server's own address and the router's are
// never handed out.
func (s *Server) allocate(mac string) (netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.byMAC[mac]; ok {
		return a, nil
	}
	for a := s.cfg.Start; !s.cfg.End.Less(a); a = a.Next() {
		if s.used[a] || a == s.id || a == s.cfg.Router {
			continue
		}
		s.used[a] = true
		s.byMAC[mac] = a
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("the pool %s-%s is exhausted", s.cfg.Start, s.cfg.End)
}

// Offer returns the lease the client with that MAC gets, as Obtain would
// read it from the server's answers (without the packets): what a plan
// predicts.
func (s *Server) Offer(mac string) (Lease, error) {
	a, err := s.allocate(mac)
	if err != nil {
		return Lease{}, err
	}
	return Lease{Addr: netip.PrefixFrom(a, s.subnet.Bits()), Router: s.cfg.Router, DNS: s.cfg.DNS, Server: s.id, Time: s.cfg.Lease}, nil
}

func (s *Server) lookup(mac string) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byMAC[mac]
	return a, ok
}

// Reply returns the answer to a request, or nil if there is none to give:
// not a request, or one meant for another server.
func (s *Server) Reply(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		return nil, nil
	}
	mac := req.ClientHWAddr.String()
	var typ dhcpv4.MessageType
	var yours netip.Addr
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		a, err := s.allocate(mac)
		if err != nil {
			return nil, err
		}
		typ, yours = dhcpv4.MessageTypeOffer, a
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.id.AsSlice()) {
			return nil, nil // the client chose another server
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr // renewing
		}
		a, ok := s.lookup(mac)
		if !ok || !want.Equal(a.AsSlice()) {
			return dhcpv4.NewReplyFromRequest(req,
				dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.id.AsSlice())))
		}
		typ, yours = dhcpv4.MessageTypeAck, a
	case dhcpv4.MessageTypeInform:
		typ = dhcpv4.MessageTypeAck
	default: // release, decline: the address stays the client's
		return nil, nil
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.id.AsSlice())),
		dhcpv4.WithNetmask(net.CIDRMask(s.subnet.Bits(), 32)),
	}
	if yours.IsValid() {
		mods = append(mods, dhcpv4.WithYourIP(yours.AsSlice()),
			dhcpv4.WithLeaseTime(uint32(s.cfg.Lease.Seconds())))
	}
	if s.cfg.Router.IsValid() {
		mods = append(mods, dhcpv4.WithRouter(s.cfg.Router.AsSlice()))
	}
	if len(s.cfg.DNS) > 0 {
		dns := make([]net.IP, len(s.cfg.DNS))
		for i, d := range s.cfg.DNS {
			dns[i] = d.AsSlice()
		}
		mods = append(mods, dhcpv4.WithDNS(dns...))
	}
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

// Serve answers requests on conn until it is closed (then it returns nil)
// or fails.
func (s *Server) Serve(conn net.PacketConn) error {
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		resp, err := s.Reply(req)
		if err != nil || resp == nil {
			continue
		}
		// A client without an address yet, and one that asks for it,
		// gets a broadcast; a renewing client, a unicast (RFC 2131 4.1).
		to := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		if u, ok := peer.(*net.UDPAddr); ok && !req.IsBroadcast() && !req.ClientIPAddr.IsUnspecified() && req.ClientIPAddr != nil {
			to = &net.UDPAddr{IP: req.ClientIPAddr, Port: u.Port}
		}
		conn.WriteTo(resp.ToBytes(), to)
	}
}
