package builtins

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/nsrun/nsrun/runtime/dhcp"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/model"
	"golang.org/x/sys/unix"
)

// dhcp_server(netns, link, range, router=None, dns=[], lease="1h",
// subnet=None) serves DHCPv4 on link, as Neutron's dnsmasq does in a qdhcp
// namespace, and returns its proc (.pid, .stop()). range is a pair of
// addresses, handed out in order, one per client MAC for the server's
// lifetime: with nsrun's fixed MACs, a recipe gets the same addresses on
// every run. The netmask is that of the link's address holding the range,
// unless subnet= is given; the server's identifier is the link's address.
// The server is a process of its own: it outlives the run when the lab stays
// up, and teardown, rollback or proc.stop() ends it. It is listening when
// dhcp_server returns.
//
// Equivalent to: ip netns exec $netns dnsmasq --interface=$link --dhcp-range=$first,$last,$lease
func dhcpServer(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	p, ns, err := serveDHCP(thread, b, args, kwargs)
	if ns == nil { // bad arguments: every part stops there
		return nil, err
	}
	rt, rerr := engine.FromThread(thread)
	if rerr != nil {
		return nil, rerr
	}
	return carriedProc(rt, ns, p, err)
}

// serveDHCP is dhcp_server; ns is its namespace once its arguments are
// good.
func serveDHCP(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (*Proc, *Netns, error) {
	var ns *Netns
	var l *Link
	var rng addrRange
	var router ipAddr
	var dns addrList
	lease := duration(time.Hour)
	var subnet starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "netns", &ns, "link", &l, "range", &rng,
		"router?", &router, "dns?", &dns, "lease?", &lease, "subnet?", &subnet); err != nil {
		return nil, nil, err
	}
	cfg := dhcp.Config{Link: l.state.name, Start: rng[0], End: rng[1], Router: netip.Addr(router), DNS: dns, Lease: time.Duration(lease)}
	switch {
	case cfg.Router.IsValid() && !cfg.Router.Is4():
		return nil, nil, fmt.Errorf("%s: for parameter router: %s is not an IPv4 address", b.Name(), cfg.Router)
	case cfg.Lease < time.Second || cfg.Lease%time.Second != 0:
		return nil, nil, fmt.Errorf("%s: for parameter lease: %s is not a whole number of seconds", b.Name(), cfg.Lease)
	}
	if subnet != starlark.None {
		s, ok := starlark.AsString(subnet)
		p, err := parsePrefix(s)
		if !ok || err != nil || !p.Addr().Is4() {
			return nil, nil, fmt.Errorf("%s: for parameter subnet: %s is not an IPv4 CIDR", b.Name(), subnet)
		}
		cfg.Subnet = p.Masked()
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, nil, err
	}
	if l.ns() != ns.name {
		return nil, nil, fmt.Errorf("%s: link %q is in netns %q, not %q", b.Name(), l.state.name, l.state.ns.Name(), ns.Name())
	}
	if err := noProcessIn(rt, b, ns); err != nil {
		return nil, nil, err
	}
	if err := l.mutable(rt); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	// The server's command as a plan shows it; the process is known by it
	// (the real one holds a socket of the run's too).
	served := append([]string{dhcp.Command}, cfg.Args()...)
	opts := engine.SpawnOptions{Name: "dhcp_server", Sum: engine.Sum(served...)}
	k, err := rt.Acting() // in an apply's past too: a server started is a real one
	if err != nil {
		return nil, ns, err
	}
	if _, real := kernel.As[kernel.Pather](k); !real || elsewhere(rt, ns) {
		// Planning (or another machine's server): the plan shows the
		// command; there is nothing to wait for, and no readiness socket
		// to name. The server is kept, to answer the plan's clients as
		// the real one will.
		id, subnet, err := dhcp.ServerAddr(cfg, rt.Addrs(ns.name, l.state.name))
		if err != nil {
			return nil, ns, fmt.Errorf("%s: %w", b.Name(), err)
		}
		srv, err := dhcp.NewServer(cfg, id, subnet)
		if err != nil {
			return nil, ns, fmt.Errorf("%s: %w", b.Name(), err)
		}
		sp, err := rt.Spawn(thread, ns.name, served, opts)
		if err != nil {
			return nil, ns, fmt.Errorf("%s: on %q in netns %q: %w", b.Name(), l.state.name, ns.Name(), err)
		}
		plannedServers(rt)[model.LinkKey{NS: ns.name, Name: l.state.name}] = srv
		return &Proc{sp: sp, argv: served, ns: ns}, ns, nil
	}
	if sp, ok := rt.Running(ns.name, opts); ok { // an apply's: serving already
		return &Proc{sp: sp, argv: served, ns: ns}, ns, nil
	}
	var argv []string
	var sp *engine.Spawned
	_, err = dhcp.Start(rt.Ctx, cfg, rt.Dir, func(a []string) (int, error) {
		argv = a
		var err error
		sp, err = rt.Spawn(thread, ns.name, a, opts)
		return sp.Pid, err
	})
	if err != nil {
		// A server that started is journaled: the rollback stops it.
		return nil, ns, fmt.Errorf("%s: on %q in netns %q: %w", b.Name(), l.state.name, ns.Name(), err)
	}
	return &Proc{sp: sp, argv: argv, ns: ns}, ns, nil
}

// dhcp_client(link, timeout="5s", default_route=True) obtains a DHCPv4 lease
// for the link (in its namespace; the link must be up), adds the address to
// it and, if the server names a router and default_route is true, the
// default route through it; both are undone at teardown. It returns
// struct(addr="10.0.0.100/24", router="10.0.0.1" or None, dns=[...],
// lease_s=3600, server="10.0.0.2", planned=False). A process of the lab
// keeps the lease (named dhcp_client-LINK): the address has the lease's
// lifetime, and it renews the lease at the server's renewal time (T1), so
// the address never outlives its lease; inspect shows its renewals. The
// default route has proto dhcp. When planning, the DHCP servers the plan
// started on the link's segment answer as they will in a run (planned=True);
// with none there, the result is a placeholder (addr="0.0.0.0/32", router
// and server None) and nothing is added.
//
// Equivalent to: ip netns exec $netns dhclient -1 $link
func dhcpClient(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var l *Link
	timeout := duration(5 * time.Second)
	defaultRoute := true
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "link", &l, "timeout?", &timeout, "default_route?", &defaultRoute); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if err := l.mutable(rt); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	rk, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	if info, err := rk.LinkGet(l.ns(), l.state.name); err == nil && !info.Up {
		return nil, fmt.Errorf("%s: link %q in netns %q is down; bring it up first (.up())", b.Name(), l.state.name, l.state.ns.Name())
	}
	// An apply's client asks the server even where the lab has the lease
	// (see engine.Runtime.InPast): what it got is the server's to say.
	ak, err := rt.Acting()
	if err != nil {
		return nil, err
	}
	lease, planned, err := obtain(rt, ak, l, time.Duration(timeout))
	if err != nil {
		return nil, fmt.Errorf("%s: on %q in netns %q: %w", b.Name(), l.state.name, l.state.ns.Name(), err)
	}
	if !lease.Addr.Addr().IsUnspecified() {
		if err := keepLease(thread, b, rt, l, lease, planned, defaultRoute); err != nil {
			return nil, err
		}
	}
	return leaseValue(lease, planned), nil
}

// obtain gets a lease for l. A plan asks the DHCP servers it started on
// l's segment, as the real ones will answer (nsrun's servers are
// deterministic); with none there (a daemon of the recipe's serves it, say)
// the lease is a placeholder, 0.0.0.0/32, and nothing is added.
func obtain(rt *engine.Runtime, rk kernel.Kernel, l *Link, timeout time.Duration) (lease dhcp.Lease, planned bool, err error) {
	k, real := kernel.As[kernel.Pather](rk)
	if real {
		if err := rt.Operational(rt.Ctx, false); err != nil {
			return dhcp.Lease{}, false, err
		}
		lease, err := dhcp.Obtain(rt.Ctx, k.Path(l.ns()), l.state.name, timeout)
		return lease, false, err
	}
	if p, ok := kernel.As[kernel.Planner](rk); ok {
		p.Note(ipNetnsExec(l.ns()) + "dhclient -1 " + l.state.name)
	}
	servers := plannedServers(rt)
	for _, at := range rt.Segment(l.ns(), l.state.name) {
		if srv, ok := servers[at]; ok {
			lease, err := srv.Offer(l.state.mac)
			return lease, true, err
		}
	}
	noteMadeUp(rk)
	return dhcp.Lease{Addr: netip.MustParsePrefix("0.0.0.0/32")}, true, nil
}

// plannedServers are the DHCP servers a plan started, by their link.
func plannedServers(rt *engine.Runtime) map[model.LinkKey]*dhcp.Server {
	return rt.Memo("dhcp servers", func() any { return map[model.LinkKey]*dhcp.Server{} }).(map[model.LinkKey]*dhcp.Server)
}

// keepLease adds a lease's address to its link, and its default route, and
// starts the process that keeps it.
func keepLease(thread *starlark.Thread, b *starlark.Builtin, rt *engine.Runtime, l *Link, lease dhcp.Lease, planned, defaultRoute bool) error {
	w := says("%s: adding the leased %s to %q in netns %q", b.Name(), lease.Addr, l.state.name, l.state.ns.Name()).orExists("the address is already there")
	if err := now(thread, rt, journal.Step{Op: journal.OpAddr, NS: l.ns(), Name: l.state.name, Kind: model.Leased, Addr: lease.Addr}, w, func(k kernel.Kernel, _ *journal.Step) error { return k.AddrAdd(l.ns(), l.state.name, lease.Addr) }); err != nil {
		return err
	}
	if lease.Router.IsValid() && defaultRoute && l.ns() == kernel.Host {
		return fmt.Errorf("%s: a default route in the host namespace would take the machine's traffic (pass default_route=False)", b.Name())
	}
	if lease.Router.IsValid() && defaultRoute {
		r := kernel.Route{Family: 4, Via: lease.Router, Dev: l.state.name, Proto: unix.RTPROT_DHCP}
		w := says("%s: adding %s in netns %q", b.Name(), r, l.state.ns.Name()).orExists("a default route exists (pass default_route=False to keep it)")
		if err := now(thread, rt, journal.Step{Op: journal.OpRoute, NS: l.ns(), Route: &r}, w, func(k kernel.Kernel, _ *journal.Step) error { return k.RouteAdd(l.ns(), r) }); err != nil {
			return err
		}
	}
	if lease.Time <= 0 || lease.Time >= infiniteLease {
		return nil
	}
	// The lease's keeper: the address gets the lease's lifetime, and
	// lives on only while the lease is renewed.
	state := filepath.Join(rt.Dir, "dhcp", kernel.NSArg(l.ns())+"-"+l.state.name+".json")
	argv := []string{dhcp.RenewCommand, "-link", l.state.name}
	if !planned {
		if err := os.MkdirAll(filepath.Dir(state), 0o700); err != nil {
			return fmt.Errorf("%s: %w", b.Name(), err)
		}
		var err error
		if argv, err = dhcp.RenewArgs(lease, l.state.name, state); err != nil {
			return fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	// The keeper is known by the lease it keeps: its command holds what
	// only the run knows (its state file, the lease's times).
	o := engine.SpawnOptions{Name: "dhcp_client-" + l.state.name, Sum: engine.Sum("dhcp_client", l.state.name, lease.Addr.String(), lease.Router.String(), lease.Server.String())}
	if _, err := rt.Spawn(thread, l.ns(), argv, o); err != nil {
		return fmt.Errorf("%s: keeping the lease on %q in netns %q: %w", b.Name(), l.state.name, l.state.ns.Name(), err)
	}
	return nil
}

func ipNetnsExec(ns string) string {
	if ns == kernel.Host {
		return ""
	}
	return "ip netns exec " + ns + " "
}

func leaseValue(l dhcp.Lease, planned bool) starlark.Value {
	addrOrNone := func(a netip.Addr) starlark.Value {
		if !a.IsValid() {
			return starlark.None
		}
		return starlark.String(a.String())
	}
	dns := make([]starlark.Value, len(l.DNS))
	for i, d := range l.DNS {
		dns[i] = starlark.String(d.String())
	}
	return starlarkstruct.FromStringDict(starlark.String("lease"), starlark.StringDict{
		"addr":    starlark.String(l.Addr.String()),
		"router":  addrOrNone(l.Router),
		"dns":     starlark.NewList(dns),
		"lease_s": starlark.MakeInt64(int64(l.Time / time.Second)),
		"server":  addrOrNone(l.Server),
		"planned": starlark.Bool(planned),
	})
}

// addrRange is a DHCP pool: a pair of IPv4 addresses, first to last.
type addrRange [2]netip.Addr

func (r *addrRange) Unpack(v starlark.Value) error {
	seq, ok := v.(starlark.Indexable)
	if _, isStr := v.(starlark.String); !ok || isStr || seq.Len() != 2 {
		return fmt.Errorf("got %s, want a pair of addresses (first, last)", v.Type())
	}
	for i := range 2 {
		s, ok := starlark.AsString(seq.Index(i))
		a, err := netip.ParseAddr(s)
		if !ok || err != nil || !a.Is4() {
			return fmt.Errorf("%s is not an IPv4 address", seq.Index(i))
		}
		r[i] = a
	}
	if r[1].Less(r[0]) {
		return fmt.Errorf("%s ends before it starts", v)
	}
	return nil
}

// addrList is a list of IPv4 addresses, such as DNS servers.
type addrList []netip.Addr

func (l *addrList) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	iter := starlark.Iterate(v)
	if _, isStr := v.(starlark.String); iter == nil || isStr {
		return fmt.Errorf("got %s, want list of addresses", v.Type())
	}
	defer iter.Done()
	var x starlark.Value
	for iter.Next(&x) {
		s, ok := starlark.AsString(x)
		a, err := netip.ParseAddr(s)
		if !ok || err != nil || !a.Is4() {
			return fmt.Errorf("%s is not an IPv4 address", x)
		}
		*l = append(*l, a)
	}
	return nil
}

// infiniteLease is a lease that never ends (RFC 2131's 0xffffffff seconds).
const infiniteLease = 0xffffffff * time.Second
