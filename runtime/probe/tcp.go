package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nsrun/nsrun/runtime/nsexec"
)

// Connected is what a TCP connection attempt observed.
type Connected struct {
	OK  bool
	Err string        // "" if it connected; else as strerror has it, lowercased: "connection refused", "timed out", ...
	RTT time.Duration // from the SYN to the connection (the handshake)
}

// TCPConnect opens a TCP connection to addr:port from inside the namespace
// pinned at nsPath ("" for the process's own), and closes it at once. The
// error is for what prevented the attempt (no namespace, ctx cancelled);
// what the network did is in the result.
//
// Equivalent to: ip netns exec $ns nc -z -w $timeout $addr $port
func TCPConnect(ctx context.Context, nsPath string, addr netip.Addr, port int, timeout time.Duration) (Connected, error) {
	var c Connected
	err := nsexec.Do(nsPath, func() error {
		d := net.Dialer{Timeout: timeout}
		start := time.Now()
		// The socket is made now, on this thread, in the namespace.
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr.String(), strconv.Itoa(port)))
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			c.Err = connectError(err)
			return nil
		}
		c.OK, c.RTT = true, max(time.Since(start), time.Nanosecond)
		return conn.Close()
	})
	return c, err
}

// connectError names why a connection failed as strerror does, lowercased.
func connectError(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return strings.ToLower(errno.Error())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	return err.Error()
}
