package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/nsrun/nsrun/runtime/nsexec"
)

// Lease is what a server granted.
type Lease struct {
	Addr   netip.Prefix // the address, with the subnet's length
	Router netip.Addr   // invalid: the server offered none
	DNS    []netip.Addr
	Server netip.Addr // the server's identifier
	Time   time.Duration
	// The server's offer and acknowledgement, as sent: what a renewal
	// starts from (see RenewArgs).
	Offer, ACK []byte
}

// tryTimeout is how long one DISCOVER or REQUEST waits for its answer
// before it is sent again; the caller's timeout bounds the whole exchange.
const tryTimeout = time.Second

// Obtain gets a lease for link in the namespace at nsPath ("" for the
// process's own) as `dhclient -1 link` does, but changes nothing: applying
// the lease, and journaling it, is the caller's. The client's raw socket is
// made inside the namespace, on the link, so it belongs there; the exchange
// runs on an ordinary goroutine.
func Obtain(ctx context.Context, nsPath, link string, timeout time.Duration) (Lease, error) {
	var conn net.PacketConn
	var hw net.HardwareAddr
	err := nsexec.Do(nsPath, func() error {
		ifc, err := net.InterfaceByName(link)
		if err != nil {
			return fmt.Errorf("link %q: %w", link, err)
		}
		hw = ifc.HardwareAddr
		conn, err = nclient4.NewRawUDPConn(link, dhcpv4.ClientPort)
		return err
	})
	if err != nil {
		return Lease{}, err
	}
	retries := max(1, int(timeout/tryTimeout))
	c, err := nclient4.NewWithConn(conn, hw, nclient4.WithTimeout(min(timeout, tryTimeout)), nclient4.WithRetry(retries))
	if err != nil {
		conn.Close()
		return Lease{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, err := c.Request(ctx)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return Lease{}, fmt.Errorf("no lease within %s", timeout)
		}
		return Lease{}, err
	}
	lease, err := leaseOf(l.ACK)
	lease.Offer, lease.ACK = l.Offer.ToBytes(), l.ACK.ToBytes()
	return lease, err
}

// leaseOf reads a lease from the server's ACK.
func leaseOf(ack *dhcpv4.DHCPv4) (Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return Lease{}, fmt.Errorf("the server's answer carries no address")
	}
	bits := 32
	if m := ack.SubnetMask(); m != nil {
		bits, _ = m.Size()
	}
	l := Lease{Addr: netip.PrefixFrom(ip, bits), Time: ack.IPAddressLeaseTime(0)}
	if rs := ack.Router(); len(rs) > 0 {
		l.Router, _ = netip.AddrFromSlice(rs[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	l.Server, _ = netip.AddrFromSlice(ack.ServerIdentifier().To4())
	return l, nil
}
