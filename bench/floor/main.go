// Command floor builds or tears down the benchmark's star lab (see
// bench/star.star) with the netlink calls it needs and nothing else: no
// recipe, no journal, no checks. It is the floor nsrun is measured against.
//
//	floor -n 500 setup
//	floor -n 500 -v4 setup        # IPv6 off in the hosts, two IPv4 addresses (star.star N v4)
//	floor -n 500 teardown         # one request for the links, one unmount per namespace
//	floor -n 500 -each teardown   # the host's links deleted one by one
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	dir   = "/run/netns"
	group = 0x6e737275 // the lab's device group: teardown deletes it in one request
)

func main() {
	n := flag.Int("n", 100, "hosts")
	each := flag.Bool("each", false, "teardown: delete the host's links one by one")
	nsOnly := flag.Bool("ns-only", false, "teardown: leave the host's links to the namespaces' deletion")
	flag.BoolVar(&v4, "v4", false, "setup: IPv6 off in the hosts' namespaces, a second IPv4 address for the IPv6 one")
	flag.Parse()
	runtime.LockOSThread() // namespaces are entered on this thread only
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	check(err)
	switch flag.Arg(0) {
	case "setup":
		setup(h, *n)
	case "teardown":
		teardown(h, *n, *each, *nsOnly)
	default:
		fmt.Fprintln(os.Stderr, "usage: floor [-n N] [-each] setup|teardown")
		os.Exit(2)
	}
}

var v4 bool

func setup(h *netlink.Handle, n int) {
	host, err := netns.Get()
	check(err)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-star", Flags: net.FlagUp}}
	check(h.LinkAdd(br))
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("h%d", i)
		ns, nh := newNamed(name, host)
		lo, err := nh.LinkByName("lo")
		check(err)
		check(nh.LinkSetUp(lo))
		v := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: "v-" + name, MasterIndex: br.Index, Flags: net.FlagUp, Group: group},
			PeerName:  "eth0", PeerNamespace: netlink.NsFd(ns),
		}
		check(h.LinkAdd(v))
		eth, err := nh.LinkByName("eth0")
		check(err)
		a := i + 1
		check(nh.AddrAdd(eth, addr(fmt.Sprintf("10.%d.%d.%d/8", a>>16, (a>>8)&255, a&255))))
		if v4 {
			check(nh.AddrAdd(eth, addr(fmt.Sprintf("100.%d.%d.%d/10", 64+(a>>16), (a>>8)&255, a&255))))
		} else {
			v6 := addr(fmt.Sprintf("fd00::%x/64", a))
			v6.Flags = unix.IFA_F_NODAD
			check(nh.AddrAdd(eth, v6))
		}
		check(nh.LinkSetUp(eth))
		nh.Close()
		ns.Close()
	}
}

func teardown(h *netlink.Handle, n int, each, nsOnly bool) {
	if nsOnly {
	} else if each {
		for i := 0; i < n; i++ {
			l, err := h.LinkByName(fmt.Sprintf("v-h%d", i))
			check(err)
			check(h.LinkDel(l))
		}
	} else {
		req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
		_, err := req.Execute(unix.NETLINK_ROUTE, 0)
		check(err)
	}
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("h%d", i))
		check(unix.Unmount(p, unix.MNT_DETACH))
		check(os.Remove(p))
	}
	br, err := h.LinkByName("br-star")
	check(err)
	check(h.LinkDel(br))
}

// newNamed creates a namespace pinned at dir/name, as `ip netns add` does,
// and returns it with a netlink handle in it; the thread is back in host.
func newNamed(name string, host netns.NsHandle) (netns.NsHandle, *netlink.Handle) {
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
	check(unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), p, "none", unix.MS_BIND, ""))
	ns, err := netns.Get()
	check(err)
	nh, err := netlink.NewHandle(unix.NETLINK_ROUTE) // its socket opens in the namespace
	check(err)
	check(netns.Set(host))
	return ns, nh
}

func addr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	check(err)
	return a
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}
