package builtins

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/probe"
)

// The observation builtins send ICMP and count packets natively, from
// sockets opened inside the namespaces: no ping or tcpdump is needed. On a
// kernel that only records (planning, tests without root) nothing is sent:
// a check is assumed to pass, with plausible values (every request
// answered, planned=True), so that a recipe plans through its checks.

// noteMadeUp tells a recording kernel that the run was just given a made-up
// observation (see kernel.Recorder.Observe).
func noteMadeUp(k kernel.Kernel) {
	if p, ok := kernel.As[kernel.Planner](k); ok {
		p.Observe()
	}
}

// notRun is a ping result's error on a kernel that does not send.
const notRun = "not run (plan)"

// nsPath returns where namespace ns is pinned, for work done inside it, and
// false if the run's kernel is not the real one.
func nsPath(k kernel.Kernel, ns string) (string, bool) {
	if p, ok := kernel.As[kernel.Pather](k); ok {
		return p.Path(ns), true
	}
	return "", false
}

// pingArgs are the arguments ping, reach and unreachable share.
type pingArgs struct {
	ns       *Netns
	dst      ipAddr
	count    int
	timeout  duration
	interval duration
	dev      starlark.Value
	src      ipAddr // invalid: the kernel's choice
	size     int
	df       bool
	ttl      starlark.Value // an int, or None
}

func (a *pingArgs) unpack(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) error {
	a.count, a.timeout, a.interval = 3, duration(time.Second), duration(200*time.Millisecond)
	a.dev, a.ttl, a.size = starlark.None, starlark.None, 56
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &a.ns, "dst", &a.dst,
		"count?", &a.count, "timeout?", &a.timeout, "interval?", &a.interval, "dev?", &a.dev,
		"src?", &a.src, "size?", &a.size, "df?", &a.df, "ttl?", &a.ttl); err != nil {
		return err
	}
	if src := netip.Addr(a.src); src.IsValid() && src.Unmap().Is4() != netip.Addr(a.dst).Unmap().Is4() {
		return fmt.Errorf("%s: for parameter src: %q is not of %s's family", b.Name(), src, netip.Addr(a.dst))
	}
	if a.size < probe.MinSize || a.size > probe.MaxSize {
		return fmt.Errorf("%s: for parameter size: %d is out of range (%d to %d)", b.Name(), a.size, probe.MinSize, probe.MaxSize)
	}
	if a.ttl != starlark.None {
		t, err := starlark.AsInt32(a.ttl)
		if err != nil || t < 1 || t > 255 {
			return fmt.Errorf("%s: for parameter ttl: %s is not a TTL (1 to 255)", b.Name(), a.ttl)
		}
	}
	switch d := a.dev.(type) {
	case starlark.NoneType, starlark.String:
	case *Link:
		if d.ns() != a.ns.name {
			return fmt.Errorf("%s: for parameter dev: %q is in netns %q, not %q", b.Name(), d.state.name, d.state.ns.Name(), a.ns.Name())
		}
	default:
		return fmt.Errorf("%s: for parameter dev: got %s, want link or string", b.Name(), a.dev.Type())
	}
	if a.count < 1 || a.count > 1000 {
		return fmt.Errorf("%s: for parameter count: %d is out of range (1 to 1000)", b.Name(), a.count)
	}
	return nil
}

// run pings, or returns a "not run" result on a kernel that only records.
func (a *pingArgs) run(thread *starlark.Thread, b *starlark.Builtin) (probe.Result, error) {
	rt, err := engine.FromThread(thread)
	if err != nil {
		return probe.Result{}, err
	}
	dst := netip.Addr(a.dst)
	k, err := rt.Kernel()
	if err != nil {
		return probe.Result{}, err
	}
	path, real := nsPath(k, a.ns.name)
	if !real {
		noteMadeUp(k)
		// Assumed to pass, with plausible values: every request answered.
		rtt := make([]time.Duration, a.count)
		for i := range rtt {
			rtt[i] = 100 * time.Microsecond
		}
		return probe.Result{Dst: dst, Sent: a.count, Received: a.count, RTT: rtt, TTL: 64, Err: notRun}, nil
	}
	var dev string
	switch d := a.dev.(type) {
	case starlark.String:
		dev = string(d)
	case *Link:
		dev = d.state.name
	}
	if err := rt.Operational(rt.Ctx, dst.Is6() && !dst.Is4In6()); err != nil {
		return probe.Result{}, err
	}
	o := probe.Options{Count: a.count, Interval: time.Duration(a.interval), Timeout: time.Duration(a.timeout), Dev: dev,
		Src: netip.Addr(a.src), Size: a.size, DF: a.df}
	if a.ttl != starlark.None {
		o.TTL, _ = starlark.AsInt32(a.ttl)
	}
	r, err := probe.Ping(rt.Ctx, path, dst, o)
	if err != nil {
		return r, fmt.Errorf("%s: %s from netns %q: %w", b.Name(), dst, a.ns.Name(), err)
	}
	return r, nil
}

// pingValue is a ping result as recipes see it:
//
//	struct(netns, dst, sent, received, ok, rtt_ms, error, error_from)
//
// rtt_ms lists the round-trip time of each reply in milliseconds, in
// sequence order; error is "" or what the kernel reported (see probe.Result);
// error_from is who reported an ICMP error, or None.
func pingValue(ns *Netns, r probe.Result) starlark.Value {
	rtts := make([]starlark.Value, len(r.RTT))
	for i, d := range r.RTT {
		rtts[i] = starlark.Float(math.Round(float64(d.Nanoseconds())/1e3) / 1e3)
	}
	var from starlark.Value = starlark.None
	if r.ErrFrom.IsValid() {
		from = starlark.String(r.ErrFrom.String())
	}
	planned := r.Err == notRun // assumed, not observed (see pingArgs.run)
	errText := r.Err
	if planned {
		errText = ""
	}
	return starlarkstruct.FromStringDict(starlark.String("ping_result"), starlark.StringDict{
		"netns":      ns,
		"dst":        starlark.String(r.Dst.String()),
		"sent":       starlark.MakeInt(r.Sent),
		"received":   starlark.MakeInt(r.Received),
		"ok":         starlark.Bool(r.Received > 0 || planned),
		"planned":    starlark.Bool(planned),
		"rtt_ms":     starlark.NewList(rtts),
		"error":      starlark.String(errText),
		"error_from": from,
		"ttl":        starlark.MakeInt(r.TTL),
	})
}

// ping(netns, dst, count=3, timeout="1s", interval="200ms", dev=None) sends count ICMP
// (IPv4) or ICMPv6 echo requests from inside netns to dst, one every
// interval, and waits up to timeout after the last one; it returns early
// once every request got its reply or an ICMP error. A link-local IPv6
// address names its link: "fe80::1%eth0". It never fails the recipe for
// what the network does; it returns
//
//	struct(netns, dst, sent, received, ok, rtt_ms, error, error_from, ttl)
//
// with ok = received > 0, rtt_ms a list of floats (one per reply), and
// error "" or what the kernel reported: "destination host unreachable"
// (ARP or neighbour discovery got no answer; error_from is who said so),
// "destination network unreachable" (a router has no route), "network is
// unreachable" (netns itself has no route: nothing is sent), ...; ttl is the
// TTL of the first IPv4 reply as it arrived. dev= sends through that link
// only, as ping -I does. On a kernel that only plans, nothing is sent: the
// ping is assumed to pass (sent = received = count, ttl=64, planned=True).
//
// Equivalent to: ip netns exec $netns ping -c $count -i $interval -W $timeout $dst
func ping(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return pingChecked(thread, b, args, kwargs, nil)
}

// pingChecked pings as ping() does and returns the result, or the error
// check finds in it.
func pingChecked(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, check func(*pingArgs, probe.Result) error) (starlark.Value, error) {
	var a pingArgs
	if err := a.unpack(b, args, kwargs); err != nil {
		return nil, err
	}
	r, err := a.run(thread, b)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(&a, r); err != nil {
			return nil, err
		}
	}
	return pingValue(a.ns, r), nil
}

// summary is "3 sent, 0 received: destination host unreachable".
func summary(r probe.Result) string {
	s := fmt.Sprintf("%d sent, %d received", r.Sent, r.Received)
	if r.Err != "" {
		s += ": " + r.Err
		if r.ErrFrom.IsValid() {
			s += " (from " + r.ErrFrom.String() + ")"
		}
	}
	return s
}

// reach(netns, dst, count=3, timeout="1s", interval="200ms") pings as ping()
// does and fails the recipe unless a reply came back; it returns the ping
// result. The error reads:
//
//	reach: no reply from 172.16.2.3 in netns "ns1" (3 sent, 0 received: destination host unreachable (from 172.16.2.1))
//
// Equivalent to: ip netns exec $netns ping -c $count $dst || exit 1
func reach(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return pingChecked(thread, b, args, kwargs, func(a *pingArgs, r probe.Result) error {
		if r.Received == 0 && r.Err != notRun {
			return fmt.Errorf("%s: no reply from %s in netns %q (%s)", b.Name(), r.Dst, a.ns.Name(), summary(r))
		}
		return nil
	})
}

// unreachable(netns, dst, count=3, timeout="1s", interval="200ms") pings as
// ping() does and fails the recipe if any reply came back; it returns the
// ping result. The error reads:
//
//	unreachable: 10.0.0.2 replied to netns "ns1" (3 sent, 3 received)
//
// Equivalent to: ! ip netns exec $netns ping -c $count $dst || exit 1
func unreachable(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return pingChecked(thread, b, args, kwargs, func(a *pingArgs, r probe.Result) error {
		if r.Received > 0 && r.Err != notRun { // a plan assumes the check passes
			return fmt.Errorf("%s: %s replied to netns %q (%s)", b.Name(), r.Dst, a.ns.Name(), summary(r))
		}
		return nil
	})
}

// pingallWorkers bounds the pings in flight: they mostly wait.
const pingallWorkers = 8

// pingall(namespaces, count=1, timeout="500ms") pings, from every namespace
// of the list, every other one, as Mininet's pingall does, at most 8 pings
// at a time. The target of a namespace is its first global-scope address,
// IPv4 preferred (in the order of ns.addrs()); a namespace without one
// cannot be reached. It prints nothing and returns
//
//	{src_name: {dst_name: bool}}
//
// in the order of the list ("host" names host()). On a kernel that only
// plans, every pair is True.
//
// Equivalent to: for a in $ns; for b in $ns; ip netns exec $a ping -c 1 $(addr of $b)
func pingall(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var list starlark.Iterable
	count, timeout := 1, duration(500*time.Millisecond)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "namespaces", &list, "count?", &count, "timeout?", &timeout); err != nil {
		return nil, err
	}
	if count < 1 || count > 1000 {
		return nil, fmt.Errorf("%s: for parameter count: %d is out of range (1 to 1000)", b.Name(), count)
	}
	var nss []*Netns
	seen := map[string]bool{}
	iter := list.Iterate()
	defer iter.Done()
	var v starlark.Value
	for iter.Next(&v) {
		ns, ok := v.(*Netns)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter namespaces: got %s, want netns", b.Name(), v.Type())
		}
		if seen[ns.name] {
			return nil, fmt.Errorf("%s: netns %q is listed twice", b.Name(), ns.Name())
		}
		seen[ns.name] = true
		nss = append(nss, ns)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	obs, ok := observer(k)
	if !ok {
		return nil, fmt.Errorf("%s: the kernel cannot list addresses", b.Name())
	}
	targets := make([]netip.Addr, len(nss))
	for i, ns := range nss {
		addrs, err := obs.Addrs(ns.name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		targets[i] = firstGlobal(addrs)
	}

	// reached[i][j]: i reached j.
	reached := make([][]bool, len(nss))
	for i := range reached {
		reached[i] = make([]bool, len(nss))
	}
	var pairs []nsPair
	for i := range nss {
		for j := range nss {
			if i != j && targets[j].IsValid() {
				pairs = append(pairs, nsPair{i, j})
			}
		}
	}
	_, real := nsPath(k, kernel.Host)
	if !real {
		noteMadeUp(k)
		for _, p := range pairs {
			reached[p.i][p.j] = true
		}
	} else if err := rt.Operational(rt.Ctx, slices.ContainsFunc(targets, func(a netip.Addr) bool { return a.Is6() && !a.Is4In6() })); err != nil {
		return nil, err
	} else if err := pingAcross(rt, nss, pairs, reached, func(pairs []nsPair) error {
		return pingPairs(rt, k, nss, targets, pairs, count, time.Duration(timeout), reached)
	}); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}

	out := starlark.NewDict(len(nss))
	for i, src := range nss {
		row := starlark.NewDict(len(nss) - 1)
		for j, dst := range nss {
			if i != j {
				row.SetKey(starlark.String(dst.recipeName()), starlark.Bool(reached[i][j]))
			}
		}
		out.SetKey(starlark.String(src.recipeName()), row)
	}
	return out, nil
}

// pingAcross pings pairs with ping; in a lab across machines each machine
// pings from its own namespaces, and every machine gets every answer.
func pingAcross(rt *engine.Runtime, nss []*Netns, pairs []nsPair, reached [][]bool, ping func([]nsPair) error) error {
	a := rt.Across()
	if a == nil {
		return ping(pairs)
	}
	if err := rt.Meet(false); err != nil { // every machine's namespaces settled, as this one's are
		return err
	}
	var mine []nsPair
	for _, p := range pairs {
		if nsMachine(rt, nss[p.i]) == a.Machine() {
			mine = append(mine, p)
		}
	}
	perr := ping(mine)
	var got [][3]int // i, j, reached
	for _, p := range mine {
		r := 0
		if reached[p.i][p.j] {
			r = 1
		}
		got = append(got, [3]int{p.i, p.j, r})
	}
	msg := struct {
		Err     string   `json:"err,omitempty"`
		Reached [][3]int `json:"reached"`
	}{Reached: got}
	if perr != nil {
		msg.Err = perr.Error()
	}
	b, _ := json.Marshal(msg)
	all, err := rt.Exchange(b)
	if err != nil {
		return err
	}
	for _, part := range all {
		if len(part) == 0 {
			continue
		}
		msg.Err, msg.Reached = "", nil
		if err := json.Unmarshal(part, &msg); err != nil {
			return fmt.Errorf("an answer from another machine: %w", err)
		}
		if msg.Err != "" && perr == nil {
			perr = errors.New(msg.Err)
		}
		for _, r := range msg.Reached {
			if r[0] < len(nss) && r[1] < len(nss) {
				reached[r[0]][r[1]] = r[2] == 1
			}
		}
	}
	return perr
}

// nsPair is a ping of pingall: from nss[i] to targets[j].
type nsPair struct{ i, j int }

// pingPairs runs the pings of pingall, pingallWorkers at a time.
func pingPairs(rt *engine.Runtime, k kernel.Kernel, nss []*Netns, targets []netip.Addr, pairs []nsPair, count int, timeout time.Duration, reached [][]bool) error {
	work := make(chan nsPair)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(pingallWorkers, len(pairs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				path, _ := nsPath(k, nss[p.i].name)
				r, err := probe.Ping(rt.Ctx, path, targets[p.j], probe.Options{Count: count, Interval: 100 * time.Millisecond, Timeout: timeout})
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("%s from netns %q: %w", targets[p.j], nss[p.i].Name(), err)
				}
				reached[p.i][p.j] = r.Received > 0
				mu.Unlock()
			}
		}()
	}
	for _, p := range pairs {
		work <- p
	}
	close(work)
	wg.Wait()
	return first
}

// firstGlobal is a namespace's address that pingall pings: the first
// global-scope IPv4 address, else the first global-scope IPv6 one.
func firstGlobal(addrs []kernel.Addr) netip.Addr {
	var v6 netip.Addr
	for _, a := range addrs {
		if a.Scope != "global" {
			continue
		}
		if a.Prefix.Addr().Is4() {
			return a.Prefix.Addr()
		}
		if !v6.IsValid() {
			v6 = a.Prefix.Addr()
		}
	}
	return v6
}

// tcp_connect(netns, addr, port, timeout="1s") opens a TCP connection to
// addr:port from inside the namespace, and closes it at once; it returns
// struct(ok, error, rtt_ms): error is "" or why it failed ("connection
// refused", "timed out", "no route to host", ...), rtt_ms the handshake's
// time. No helper program is run. On a kernel that only records, nothing
// is sent: ok is True and error "not run (plan)".
//
// Equivalent to: ip netns exec $netns nc -z -w 1 $addr $port
func tcpConnect(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ns *Netns
	var addr ipAddr
	var port int
	timeout := duration(time.Second)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &ns, "addr", &addr, "port", &port, "timeout?", &timeout); err != nil {
		return nil, err
	}
	if !netip.Addr(addr).IsValid() {
		return nil, fmt.Errorf("%s: for parameter addr: want an IP address", b.Name())
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("%s: for parameter port: %d is not a port (1 to 65535)", b.Name(), port)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	result := func(c probe.Connected) starlark.Value {
		return starlarkstruct.FromStringDict(starlark.String("tcp_result"), starlark.StringDict{
			"ok":     starlark.Bool(c.OK),
			"error":  starlark.String(c.Err),
			"rtt_ms": starlark.Float(math.Round(float64(c.RTT.Nanoseconds())/1e3) / 1e3),
		})
	}
	path, real := nsPath(k, ns.name)
	if !real {
		noteMadeUp(k)
		return result(probe.Connected{OK: true, Err: notRun}), nil
	}
	if err := rt.Operational(rt.Ctx, netip.Addr(addr).Is6()); err != nil {
		return nil, err
	}
	c, err := probe.TCPConnect(rt.Ctx, path, netip.Addr(addr), port, time.Duration(timeout))
	if err != nil {
		return nil, fmt.Errorf("%s: %s port %d from netns %q: %w", b.Name(), netip.Addr(addr), port, ns.Name(), err)
	}
	return result(c), nil
}
