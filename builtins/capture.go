package builtins

import (
	"fmt"
	"sync"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/probe"
)

// Capture is a packet capture running on a link, started by capture().
type Capture struct {
	ns     *Netns
	dev    string
	filter string // "" for none
	pcap   string // "" for none

	mu     sync.Mutex
	probe  *probe.Capture // nil on a kernel that only plans
	counts *probe.Counts  // once stopped
}

var _ starlark.HasAttrs = (*Capture)(nil)

func (c *Capture) String() string {
	s := fmt.Sprintf("capture(%s, %q", c.ns, c.dev)
	if c.filter != "" {
		s += fmt.Sprintf(", filter=%q", c.filter)
	}
	if c.pcap != "" {
		s += fmt.Sprintf(", pcap=%q", c.pcap)
	}
	return s + ")"
}
func (c *Capture) Type() string          { return "capture" }
func (c *Capture) Freeze()               {}
func (c *Capture) Truth() starlark.Bool  { return true }
func (c *Capture) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: capture") }

var captureMethods = map[string]*starlark.Builtin{
	"stop": starlark.NewBuiltin("stop", shared(captureStop, captureNetns)),
}

func (c *Capture) AttrNames() []string {
	return attrNames(captureMethods, "dev", "filter", "netns", "pcap")
}
func (c *Capture) Attr(name string) (starlark.Value, error) {
	orNone := func(s string) starlark.Value {
		if s == "" {
			return starlark.None
		}
		return starlark.String(s)
	}
	switch name {
	case "netns":
		return c.ns, nil
	case "dev":
		return starlark.String(c.dev), nil
	case "filter":
		return orNone(c.filter), nil
	case "pcap":
		return orNone(c.pcap), nil
	}
	return builtinAttr(c, name, captureMethods)
}

// captureNetns is the namespace of a capture's method (see shared).
func captureNetns(recv starlark.Value, _ starlark.Tuple, _ []starlark.Tuple) *Netns {
	if c, ok := recv.(*Capture); ok {
		return c.ns
	}
	return nil
}

// Close stops the capture if the recipe did not (the run's closers).
func (c *Capture) Close() error {
	_, err := c.stop()
	return err
}

func (c *Capture) stop() (probe.Counts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts != nil {
		return *c.counts, nil
	}
	n := probe.Counts{Class: map[string]int{}}
	var err error
	if c.probe != nil {
		n, err = c.probe.Stop()
	}
	c.counts = &n
	return n, err
}

// capture(netns, dev, filter=None, pcap=None) starts counting the packets
// that link dev (a link or a link name) of netns sends and receives, from a
// packet socket inside netns, and returns a capture; capture.stop() ends it
// and returns the counts of what passed the filter:
//
//	{"total": n, "arp": n, "ip": n, "ip6": n, "icmp": n, "icmp6": n,
//	 "tcp": n, "udp": n, "other": n, "dropped": n}
//
// always with these keys, in this order. A packet counts in every class it
// belongs to (an ICMP echo in "ip" and "icmp"); "ip" and "icmp" are IPv4
// only; "other" is neither ARP nor IP; "dropped" is what the kernel dropped
// because the capture fell behind. Every packet the link handled before
// stop() is counted. filter is a conjunction of terms joined by "and":
// arp, ip, ip6, icmp, icmp6, tcp, udp, host ADDR (e.g. "icmp and host
// 10.0.0.2"). pcap="file" also writes the packets to a classic libpcap file
// (Ethernet), which tcpdump -r and Wireshark read, relative to nsrun's
// working directory. A capture the recipe does not stop is stopped when the
// run ends or rolls back. On a kernel that only plans, nothing is captured
// and every count is 0.
//
// Equivalent to: ip netns exec $netns tcpdump -i $dev -w $pcap $filter
func capture(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var dev starlark.Value
	var filter, pcap starlark.Value = starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &ns, "dev", &dev, "filter?", &filter, "pcap?", &pcap); err != nil {
		return nil, err
	}
	c := &Capture{ns: ns}
	switch d := dev.(type) {
	case *Link:
		if d.ns() != ns.name {
			return nil, fmt.Errorf("%s: link %q is in netns %q, not %q", b.Name(), d.state.name, d.state.ns.Name(), ns.Name())
		}
		c.dev = d.state.name
	default:
		var name ifName
		if err := name.Unpack(dev); err != nil {
			return nil, fmt.Errorf("%s: for parameter dev: %v (want link or link name)", b.Name(), err)
		}
		c.dev = string(name)
	}
	var f probe.Filter
	if filter != starlark.None {
		s, ok := starlark.AsString(filter)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter filter: got %s, want string or None", b.Name(), filter.Type())
		}
		var err error
		if f, err = probe.ParseFilter(s); err != nil {
			return nil, fmt.Errorf("%s: for parameter filter: %w", b.Name(), err)
		}
		c.filter = s
	}
	if pcap != starlark.None {
		s, ok := starlark.AsString(pcap)
		if !ok || s == "" {
			return nil, fmt.Errorf("%s: for parameter pcap: want a file name or None", b.Name())
		}
		c.pcap = s
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	path, real := nsPath(k, ns.name)
	if !real || elsewhere(rt, ns) { // planning, or another machine's: it captures there
		noteMadeUp(k)
		return c, nil
	}
	if err := rt.Operational(rt.Ctx, false); err != nil {
		return nil, err
	}
	// Promiscuous, as tcpdump is, on a link of the lab's only: nothing of
	// the machine's changes, not even for a while.
	promisc := rt.OwnsLink(ns.name, c.dev)
	if c.probe, err = probe.StartCapture(path, c.dev, f, c.pcap, promisc); err != nil {
		return nil, fmt.Errorf("%s: on %q in netns %q: %w", b.Name(), c.dev, ns.Name(), err)
	}
	rt.AddCloser(c)
	return c, nil
}

// capture.stop() stops the capture and returns its counts (see capture);
// stopping again returns the same counts.
func captureStop(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	c := b.Receiver().(*Capture)
	n, err := c.stop()
	if err != nil {
		return nil, fmt.Errorf("%s: capture on %q in netns %q: %w", b.Name(), c.dev, c.ns.Name(), err)
	}
	d := starlark.NewDict(len(probe.Classes) + 2)
	d.SetKey(starlark.String("total"), starlark.MakeInt(n.Total))
	for _, cl := range probe.Classes {
		d.SetKey(starlark.String(cl), starlark.MakeInt(n.Class[cl]))
	}
	d.SetKey(starlark.String("dropped"), starlark.MakeInt(n.Dropped))
	return d, nil
}
