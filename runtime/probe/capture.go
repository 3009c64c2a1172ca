package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nsrun/nsrun/runtime/nsexec"
	"golang.org/x/sys/unix"
)

// Counts are what a capture saw: the packets that passed its filter, in
// total and by class (see Classes), and how many the kernel dropped because
// the capture fell behind (0 unless the link is very busy).
type Counts struct {
	Total   int
	Class   map[string]int
	Dropped int
}

// Capture counts, and optionally writes to a pcap file, the packets a link
// sends and receives, from an AF_PACKET socket bound to it inside its
// namespace. A packet is seen once, as tcpdump sees it (on a loopback, only
// as it is received).
type Capture struct {
	fd, wake int // the packet socket; an eventfd that interrupts poll
	loopback bool
	filter   Filter
	file     *os.File
	pcap     *pcapWriter

	done chan struct{} // closed when the reader has returned

	mu     sync.Mutex
	counts Counts
	err    error // the first error writing the pcap file
	once   sync.Once
}

// ethPAll is htons(ETH_P_ALL): every protocol, in network byte order.
const ethPAll = (unix.ETH_P_ALL&0xff)<<8 | unix.ETH_P_ALL>>8

// frameMax holds the largest frame a veth hands over with GSO (64 KiB
// plus headers).
const frameMax = 1 << 17

// StartCapture starts counting the packets on link dev of the namespace
// pinned at nsPath ("" for the process's own) that pass f, and writes them
// to pcapPath, a new or truncated file, unless it is "".
//
// Equivalent to: ip netns exec $ns tcpdump -i $dev -w $pcap $filter
//
// With promisc, the link is in promiscuous mode while the capture lasts (as
// tcpdump has it), so that a bridge shows what it forwards; the kernel
// takes the mode back when the socket closes.
func StartCapture(nsPath, dev string, f Filter, pcapPath string, promisc bool) (*Capture, error) {
	c := &Capture{fd: -1, wake: -1, filter: f, done: make(chan struct{}), counts: Counts{Class: map[string]int{}}}
	if err := nsexec.Do(nsPath, func() error { return c.open(dev, promisc) }); err != nil {
		c.closeFds()
		return nil, err
	}
	var err error
	if c.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		c.closeFds()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if pcapPath != "" {
		if c.file, err = os.Create(pcapPath); err != nil {
			c.closeFds()
			return nil, err
		}
		if c.pcap, err = newPcapWriter(c.file); err != nil {
			c.file.Close()
			c.closeFds()
			return nil, fmt.Errorf("writing %s: %w", pcapPath, err)
		}
	}
	go c.read()
	return c, nil
}

// open runs inside the namespace. The socket is made for no protocol, so
// that it receives nothing before it is bound to the link.
func (c *Capture) open(dev string, promisc bool) error {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return fmt.Errorf("link %q: %w", dev, err)
	}
	c.loopback = ifi.Flags&net.FlagLoopback != 0
	c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("opening a packet socket: %w", err)
	}
	// Room for bursts; as root the limit does not apply. Best effort:
	// drops are counted anyway.
	unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: ethPAll, Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("binding to link %q: %w", dev, err)
	}
	if promisc {
		mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(c.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
			return fmt.Errorf("promiscuous mode on %q: %w", dev, err)
		}
	}
	return nil
}

func (c *Capture) closeFds() {
	for _, fd := range []*int{&c.fd, &c.wake} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// read counts packets until Stop wakes it, then reads what is still queued.
func (c *Capture) read() {
	defer close(c.done)
	buf := make([]byte, frameMax)
	oob := make([]byte, 128)
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.wake), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			c.setErr(fmt.Errorf("polling the packet socket: %w", err))
			return
		}
		c.drain(buf, oob)
		if fds[1].Revents != 0 {
			return
		}
	}
}

// drain reads every queued packet.
func (c *Capture) drain(buf, oob []byte) {
	for {
		n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return // EAGAIN: nothing left
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && c.loopback && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		data := buf[:min(n, len(buf))]
		p := decode(data)
		if !c.filter.match(p) {
			continue
		}
		c.mu.Lock()
		c.counts.Total++
		for cl := range p.classes {
			c.counts.Class[cl]++
		}
		c.mu.Unlock()
		if c.pcap != nil {
			if err := c.pcap.write(timestamp(oob[:oobn]), data, n); err != nil {
				c.setErr(err)
			}
		}
	}
}

// timestamp is when the kernel received the packet (SO_TIMESTAMPNS).
func timestamp(oob []byte) time.Time {
	cmsgs, _ := unix.ParseSocketControlMessage(oob)
	for _, m := range cmsgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			return time.Unix(int64(binary.NativeEndian.Uint64(m.Data)), int64(binary.NativeEndian.Uint64(m.Data[8:])))
		}
	}
	return time.Now()
}

func (c *Capture) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// Counts returns what the capture has counted so far.
func (c *Capture) Counts() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := c.counts
	cp.Class = make(map[string]int, len(Classes))
	for _, cl := range Classes {
		cp.Class[cl] = c.counts.Class[cl]
	}
	return cp
}

// Stop reads what is still queued, stops the capture, closes its pcap file
// and returns the counts. Packets a link handled before Stop was called are
// counted. Stopping again returns the same counts.
func (c *Capture) Stop() (Counts, error) {
	c.once.Do(func() {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(c.wake, one[:])
		<-c.done
		if st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			c.mu.Lock()
			c.counts.Dropped = int(st.Drops)
			c.mu.Unlock()
		}
		c.closeFds()
		if c.pcap != nil {
			err := errors.Join(c.pcap.flush(), c.file.Close())
			if err != nil {
				c.setErr(fmt.Errorf("writing %s: %w", c.file.Name(), err))
			}
		}
	})
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	return c.Counts(), err
}

// Close stops the capture (io.Closer, for the run's closers).
func (c *Capture) Close() error {
	_, err := c.Stop()
	return err
}
