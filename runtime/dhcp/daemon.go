package dhcp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/runtime/nsexec"
)

// Command is the internal command that runs a server: argv[0] of the
// process nsrun starts for it.
const Command = nsexec.InternalPrefix + "dhcp-server"

func init() { nsexec.RegisterInternal("dhcp-server", serverMain) }

// serverMain runs in a helper process already inside the namespace. It
// reports to the -ready socket either "ready ADDR SUBNET" once its UDP socket
// is bound (requests sent from then on are queued for it), or the error that
// stopped it; then it serves until it is killed.
func serverMain(args []string) int {
	cfg, readyPath, err := parseArgs(args)
	var ready net.Conn
	if readyPath != "" {
		if ready, err = net.Dial("unix", readyPath); err != nil {
			fmt.Fprintf(os.Stderr, "dhcp-server: reporting readiness: %v\n", err)
			return 1
		}
	}
	report := func(format string, a ...any) {
		if ready != nil {
			fmt.Fprintf(ready, format+"\n", a...)
			ready.Close()
		}
	}
	if err != nil {
		report("error: %v", err)
		return 2
	}
	id, subnet, err := linkAddr(cfg)
	if err != nil {
		report("error: %v", err)
		return 1
	}
	srv, err := NewServer(cfg, id, subnet)
	if err != nil {
		report("error: %v", err)
		return 1
	}
	// Bound to the link (SO_BINDTODEVICE): the server hears and answers
	// only there.
	conn, err := server4.NewIPv4UDPConn(cfg.Link, &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		report("error: listening on %q: %v", cfg.Link, err)
		return 1
	}
	// SIGTERM (teardown) ends it cleanly: the socket is closed and Serve
	// returns.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-stop; conn.Close() }()
	report("ready %s %s", id, subnet)
	if err := srv.Serve(conn); err != nil {
		fmt.Fprintf(os.Stderr, "dhcp-server: %v\n", err)
		return 1
	}
	return 0
}

// linkAddr finds the server's own address on its link: the IPv4 address
// whose subnet holds the pool, or, with a subnet given, the one inside it.
func linkAddr(cfg Config) (netip.Addr, netip.Prefix, error) {
	ifc, err := net.InterfaceByName(cfg.Link)
	if err != nil {
		return netip.Addr{}, netip.Prefix{}, fmt.Errorf("link %q: %w", cfg.Link, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, netip.Prefix{}, fmt.Errorf("addresses of %q: %w", cfg.Link, err)
	}
	var own []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP.To4())
		ones, _ := ipn.Mask.Size()
		own = append(own, netip.PrefixFrom(ip, ones))
	}
	return ServerAddr(cfg, own)
}

// ServerAddr picks, of a link's addresses, the server's own: the IPv4
// address whose subnet holds the pool, or, with a subnet given, the one
// inside it. It returns that address and the subnet served.
func ServerAddr(cfg Config, addrs []netip.Prefix) (netip.Addr, netip.Prefix, error) {
	for _, p := range addrs {
		ip := p.Addr()
		switch {
		case !ip.Is4():
		case cfg.Subnet.IsValid() && cfg.Subnet.Contains(ip):
			return ip, cfg.Subnet.Masked(), nil
		case !cfg.Subnet.IsValid() && p.Contains(cfg.Start) && p.Contains(cfg.End):
			return ip, p.Masked(), cfg.checkSubnet(p)
		}
	}
	if cfg.Subnet.IsValid() {
		return netip.Addr{}, netip.Prefix{}, fmt.Errorf("link %q has no IPv4 address in subnet %s: give it one first", cfg.Link, cfg.Subnet)
	}
	return netip.Addr{}, netip.Prefix{}, fmt.Errorf("link %q has no IPv4 address whose subnet holds the range %s-%s: give it one first, or pass subnet=", cfg.Link, cfg.Start, cfg.End)
}

// Ready is what a started server reports.
type Ready struct {
	Pid    int          // 0 if nothing was started (a recording kernel)
	Addr   netip.Addr   // the server's address on its link
	Subnet netip.Prefix // the subnet it serves
}

// Start starts a server through spawn, which starts argv in the link's
// namespace as a journaled background process (engine.Runtime.Spawn) and returns
// its pid, and returns once the server can take requests, or with the error
// that kept it from starting. Nothing is waited for if spawn started
// nothing (pid 0). The readiness socket is made in a new directory under
// tmp ("" for the system's): give the lab's record directory, which goes
// with the lab even if the run is killed meanwhile.
func Start(ctx context.Context, cfg Config, tmp string, spawn func(argv []string) (int, error)) (Ready, error) {
	if err := cfg.Validate(); err != nil {
		return Ready{}, err
	}
	dir, err := os.MkdirTemp(tmp, "nsrun-dhcp-")
	if err != nil {
		return Ready{}, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ready")
	ln, err := net.Listen("unix", path)
	if err != nil {
		return Ready{}, err
	}
	defer ln.Close()
	pid, err := spawn(append(append([]string{Command}, cfg.Args()...), "-ready", path))
	if err != nil || pid == 0 {
		return Ready{Pid: pid}, err
	}
	// If the server dies before it has reported, or the run is cancelled,
	// stop waiting: closing the listener ends Accept.
	stop, err := untilExit(ctx, pid, ln)
	if err != nil {
		return Ready{Pid: pid}, err
	}
	defer stop()
	c, err := ln.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return Ready{Pid: pid}, context.Cause(ctx)
		}
		return Ready{Pid: pid}, errors.New("the server exited before it was ready")
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return Ready{Pid: pid}, errors.New("the server exited before it was ready")
	}
	line = strings.TrimSpace(line)
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return Ready{Pid: pid}, errors.New(msg)
	}
	var addr, subnet string
	if _, err := fmt.Sscanf(line, "ready %s %s", &addr, &subnet); err != nil {
		return Ready{Pid: pid}, fmt.Errorf("the server reported %q", line)
	}
	r := Ready{Pid: pid}
	r.Addr, _ = netip.ParseAddr(addr)
	r.Subnet, _ = netip.ParsePrefix(subnet)
	return r, nil
}

// untilExit closes ln when process pid exits or ctx is done, whichever is
// first; stop ends the watch.
func untilExit(ctx context.Context, pid int, ln net.Listener) (stop func(), err error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		ln.Close() // already gone, and reaped
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("watching the server: %w", err)
	}
	// The poll wakes on the process's exit, or on the pipe's write end
	// being closed by stop.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		unix.Close(pidfd)
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		defer func() { unix.Close(pidfd); unix.Close(p[0]) }()
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}, {Fd: int32(p[0]), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if err == nil && fds[0].Revents != 0 {
				close(exited)
			}
			return
		}
	}()
	done := make(chan struct{})
	go func() {
		select {
		case <-exited:
			ln.Close()
		case <-ctx.Done():
			ln.Close()
		case <-done:
		}
	}()
	return func() { close(done); unix.Close(p[1]) }, nil
}
