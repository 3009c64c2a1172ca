package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nsrun/nsrun/runtime/nsexec"
	"golang.org/x/sys/unix"
)

// Options say how to ping.
type Options struct {
	Count    int           // echo requests to send (at least 1)
	Interval time.Duration // between two requests
	Timeout  time.Duration // how long to wait for replies after the last request
	Dev      string        // send through this link only (SO_BINDTODEVICE), as ping -I DEV
	Src      netip.Addr    // the requests' source address, as ping -I ADDR; invalid: the kernel's choice
	Size     int           // bytes of payload, as ping -s (at least 8; 0: 56, ping's)
	DF       bool          // never fragment: a request larger than the path's MTU fails, as ping -M do
	TTL      int           // the requests' TTL (hop limit), as ping -t; 0: the namespace's default
}

// Result is what a ping observed.
type Result struct {
	Dst      netip.Addr
	Sent     int             // echo requests the kernel accepted
	Received int             // distinct echo replies from Dst
	RTT      []time.Duration // of each reply, in sequence order
	// Err is the first error the kernel reported, "" if none: an ICMP
	// error about one of our requests (icmpError: "destination host
	// unreachable", ...) or a send error (strerror lowercased: "network
	// is unreachable" when the namespace has no route to Dst).
	Err     string
	ErrFrom netip.Addr // the source of the ICMP error, when Err is one
	TTL     int        // IPv4: the TTL of the first reply as it arrived (0 if none, or IPv6)
}

// payloadLen makes requests as long as ping(8)'s: 64 bytes of ICMP.
const payloadLen = 56

// MinSize and MaxSize bound a request's payload: it carries the ping's
// nonce, and fits in an IPv4 datagram.
const (
	MinSize = 8
	MaxSize = 65507
)

var nextID atomic.Uint32

func init() { nextID.Store(uint32(os.Getpid())) }

// pinger is one ping in progress: a raw socket of its own, opened in the
// namespace, identified in the packets by its ICMP id and a random nonce.
type pinger struct {
	fd    int
	v6    bool
	dst   netip.Addr
	sa    unix.Sockaddr
	id    uint16
	nonce [8]byte
	dev   string
	o     Options

	sentAt   []time.Time
	resolved []bool // a reply or an error came for the request
	rtt      []time.Duration
	res      Result
}

// Ping sends o.Count ICMP echo requests to dst, one every o.Interval, from
// inside the namespace pinned at nsPath ("" for the process's own), and
// waits up to o.Timeout after the last one for what is still outstanding.
// It returns early once every request got a reply or an ICMP error. The
// error is for what prevented the ping itself (no namespace, no socket, ctx
// cancelled); what the network did is in the Result.
//
// Equivalent to: ip netns exec $ns ping -c $count -i $interval -W $timeout $dst
func Ping(ctx context.Context, nsPath string, dst netip.Addr, o Options) (Result, error) {
	if o.Count < 1 || o.Count > 65535 {
		return Result{}, fmt.Errorf("ping count %d is out of range (1 to 65535)", o.Count)
	}
	if dst.Is6() && !dst.Is4In6() && dst.IsLinkLocalUnicast() && dst.Zone() == "" {
		return Result{}, fmt.Errorf("link-local address %s needs its link: %s%%dev", dst, dst)
	}
	if o.Size == 0 {
		o.Size = payloadLen
	}
	if o.Size < MinSize || o.Size > MaxSize {
		return Result{}, fmt.Errorf("ping size %d is out of range (%d to %d)", o.Size, MinSize, MaxSize)
	}
	if o.Src.IsValid() && o.Src.Unmap().Is4() != dst.Unmap().Is4() {
		return Result{}, fmt.Errorf("source %s and destination %s are not of one family", o.Src, dst)
	}
	p := &pinger{dst: dst.Unmap(), v6: dst.Is6() && !dst.Is4In6(), id: uint16(nextID.Add(1)), dev: o.Dev, o: o}
	binary.LittleEndian.PutUint64(p.nonce[:], rand.Uint64())
	if err := nsexec.Do(nsPath, p.open); err != nil {
		return Result{}, err
	}
	defer unix.Close(p.fd)
	p.res.Dst = p.dst
	p.sentAt = make([]time.Time, o.Count)
	p.resolved = make([]bool, o.Count)
	p.rtt = make([]time.Duration, o.Count)
	if err := p.run(ctx, o); err != nil {
		return Result{}, err
	}
	for i := 0; i < p.res.Sent; i++ {
		if p.rtt[i] > 0 {
			p.res.RTT = append(p.res.RTT, p.rtt[i])
		}
	}
	return p.res, nil
}

// open runs inside the namespace: the socket, and the link of a zone, are
// looked up there.
func (p *pinger) open() error {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if p.v6 {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return fmt.Errorf("opening an ICMP socket: %w", err)
	}
	if err := p.setup(fd); err != nil {
		unix.Close(fd)
		return err
	}
	p.fd = fd
	return nil
}

func (p *pinger) setup(fd int) error {
	if p.dev != "" {
		if err := unix.BindToDevice(fd, p.dev); err != nil {
			return fmt.Errorf("binding to link %q: %w", p.dev, err)
		}
	}
	if err := p.options(fd); err != nil {
		return err
	}
	if !p.v6 {
		p.sa = &unix.SockaddrInet4{Addr: p.dst.As4()}
		// ICMP errors about our requests arrive on the error queue, with
		// the request they are about: see errors().
		if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_RECVERR, 1); err != nil {
			return fmt.Errorf("IP_RECVERR: %w", err)
		}
		// Of the ICMP the namespace receives, only echo replies reach us.
		if err := unix.SetsockoptInt(fd, unix.SOL_RAW, unix.ICMP_FILTER, ^(1 << icmpEchoReply)); err != nil {
			return fmt.Errorf("ICMP_FILTER: %w", err)
		}
		return nil
	}
	sa := &unix.SockaddrInet6{Addr: p.dst.As16()}
	if zone := p.dst.Zone(); zone != "" {
		ifi, err := net.InterfaceByName(zone)
		if err != nil {
			return fmt.Errorf("link %q of %s: %w", zone, p.dst, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	p.sa = sa
	if err := unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_RECVERR, 1); err != nil {
		return fmt.Errorf("IPV6_RECVERR: %w", err)
	}
	var f unix.ICMPv6Filter
	for i := range f.Data {
		f.Data[i] = ^uint32(0) // block
	}
	f.Data[icmp6EchoReply>>5] &^= 1 << (icmp6EchoReply & 31)
	if err := unix.SetsockoptICMPv6Filter(fd, unix.SOL_ICMPV6, unix.ICMPV6_FILTER, &f); err != nil {
		return fmt.Errorf("ICMPV6_FILTER: %w", err)
	}
	return nil
}

// maxWait bounds one poll, so that a cancelled ctx is noticed.
const maxWait = 100 * time.Millisecond

func (p *pinger) run(ctx context.Context, o Options) error {
	next := time.Now()
	var deadline time.Time
	seq, resolved := 0, 0
	sending := true
	for {
		now := time.Now()
		if sending && !now.Before(next) {
			if err := p.send(seq); err != nil {
				p.fail(sendError(err), netip.Addr{})
				sending = false
			} else {
				seq++
				p.res.Sent = seq
				next = next.Add(o.Interval)
			}
			if seq == o.Count {
				sending = false
			}
			if !sending {
				deadline = now.Add(o.Timeout)
				if seq == 0 {
					deadline = now
				}
			}
		}
		resolved = 0
		for _, r := range p.resolved[:seq] {
			if r {
				resolved++
			}
		}
		if !sending && (resolved == seq || !now.Before(deadline)) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ping interrupted: %w", context.Cause(ctx))
		}
		until := deadline
		if sending {
			until = next
		}
		if err := p.wait(min(time.Until(until), maxWait)); err != nil {
			return err
		}
	}
}

// options sets the source, fragmentation and TTL the ping asks for.
func (p *pinger) options(fd int) error {
	o := p.o
	level, ttlOpt, mtuOpt, mtuDo := unix.SOL_IP, unix.IP_TTL, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO
	if p.v6 {
		level, ttlOpt, mtuOpt, mtuDo = unix.SOL_IPV6, unix.IPV6_UNICAST_HOPS, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO
	}
	if o.Src.IsValid() {
		var sa unix.Sockaddr = &unix.SockaddrInet4{Addr: o.Src.Unmap().As4()}
		if p.v6 {
			sa = &unix.SockaddrInet6{Addr: o.Src.As16()}
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("using source %s: %w", o.Src, err)
		}
	}
	if o.DF {
		if err := unix.SetsockoptInt(fd, level, mtuOpt, mtuDo); err != nil {
			return fmt.Errorf("setting don't-fragment: %w", err)
		}
	}
	if o.TTL > 0 {
		if err := unix.SetsockoptInt(fd, level, ttlOpt, o.TTL); err != nil {
			return fmt.Errorf("setting the TTL: %w", err)
		}
	}
	return nil
}

func (p *pinger) send(seq int) error {
	payload := make([]byte, p.o.Size)
	copy(payload, p.nonce[:])
	b := echo(p.v6, p.id, uint16(seq), payload)
	p.sentAt[seq] = time.Now()
	return unix.Sendto(p.fd, b, 0, p.sa)
}

// sendError names a send error as strerror does, lowercased: "network is
// unreachable" (no route), "no route to host" (an unreachable route),
// "permission denied" (a prohibit route or a firewall).
func sendError(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return strings.ToLower(errno.Error())
	}
	return err.Error()
}

func (p *pinger) fail(msg string, from netip.Addr) {
	if p.res.Err == "" {
		p.res.Err, p.res.ErrFrom = msg, from
	}
}

// wait polls the socket for at most d, then reads what is there.
func (p *pinger) wait(d time.Duration) error {
	ms := int((d + time.Millisecond - 1) / time.Millisecond)
	if ms < 0 {
		ms = 0
	}
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, ms); err != nil && err != unix.EINTR {
		return fmt.Errorf("polling the ICMP socket: %w", err)
	}
	if fds[0].Revents&unix.POLLERR != 0 {
		p.errors()
	}
	if fds[0].Revents&unix.POLLIN != 0 {
		p.replies()
	}
	return nil
}

// replies reads the echo replies that are queued.
func (p *pinger) replies() {
	buf := make([]byte, 65536)
	for {
		n, from, err := unix.Recvfrom(p.fd, buf, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			return
		}
		if err != nil {
			// A pending socket error (an ICMP error, maybe about
			// another socket's request): the error queue says which.
			continue
		}
		b := buf[:n]
		ttl := 0
		if !p.v6 { // a raw IPv4 socket gets the IP header too
			if n < 20 || int(b[0]&0x0f)*4 > n {
				continue
			}
			ttl = int(b[8])
			b = b[int(b[0]&0x0f)*4:]
		}
		typ, id, seq, ok := echoHeader(b)
		want := uint8(icmpEchoReply)
		if p.v6 {
			want = icmp6EchoReply
		}
		if !ok || typ != want || id != p.id || int(seq) >= len(p.sentAt) || len(b) < 16 ||
			string(b[8:16]) != string(p.nonce[:]) || sockaddrAddr(from) != p.dst.WithZone("") {
			continue
		}
		if p.rtt[seq] == 0 && !p.sentAt[seq].IsZero() {
			p.rtt[seq] = max(time.Since(p.sentAt[seq]), time.Nanosecond)
			p.resolved[seq] = true
			p.res.Received++
			if p.res.TTL == 0 {
				p.res.TTL = ttl
			}
		}
	}
}

// errors reads the error queue: each entry is an ICMP error (or a local
// one) with, as data, the start of the request it is about.
func (p *pinger) errors() {
	buf := make([]byte, 1500)
	oob := make([]byte, 512)
	for {
		n, oobn, _, _, err := unix.Recvmsg(p.fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return
		}
		_, id, seq, ok := echoHeader(buf[:n])
		if !ok || id != p.id || int(seq) >= len(p.sentAt) {
			continue
		}
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			continue
		}
		for _, c := range cmsgs {
			if !(c.Header.Level == unix.SOL_IP && c.Header.Type == unix.IP_RECVERR) &&
				!(c.Header.Level == unix.SOL_IPV6 && c.Header.Type == unix.IPV6_RECVERR) {
				continue
			}
			msg, from, ok := extendedErr(c.Data)
			if !ok {
				continue
			}
			p.fail(msg, from)
			p.resolved[seq] = true
		}
	}
}

// extendedErr decodes a struct sock_extended_err and the address of the
// node that reported it (SO_EE_OFFENDER).
func extendedErr(b []byte) (msg string, from netip.Addr, ok bool) {
	const size = 16 // sizeof(struct sock_extended_err)
	if len(b) < size {
		return "", netip.Addr{}, false
	}
	errno := binary.NativeEndian.Uint32(b[0:])
	origin, typ, code := b[4], b[5], b[6]
	switch origin {
	case unix.SO_EE_ORIGIN_ICMP:
		msg = icmpError(false, typ, code)
	case unix.SO_EE_ORIGIN_ICMP6:
		msg = icmpError(true, typ, code)
	default:
		msg = strings.ToLower(unix.Errno(errno).Error())
	}
	off := b[size:]
	if len(off) >= 2 {
		switch binary.NativeEndian.Uint16(off) {
		case unix.AF_INET:
			if len(off) >= 8 {
				from = netip.AddrFrom4([4]byte(off[4:8]))
			}
		case unix.AF_INET6:
			if len(off) >= 24 {
				from = netip.AddrFrom16([16]byte(off[8:24])).Unmap()
			}
		}
	}
	return msg, from, true
}

func sockaddrAddr(sa unix.Sockaddr) netip.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap()
	}
	return netip.Addr{}
}
