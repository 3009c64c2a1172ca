package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// An FDBer programs forwarding entries: where a link sends frames for a MAC
// (a vxlan: to which VTEP; a bridge port: out of it).
type FDBer interface {
	// FDBAppend adds e to dev's forwarding database, beside the entries
	// for the same MAC (a vxlan floods to every VTEP of the all-zero
	// MAC's entries).
	FDBAppend(ns, dev string, e FDBEntry) error
	// FDBDel deletes e; none there is success.
	FDBDel(ns, dev string, e FDBEntry) error
}

var (
	_ FDBer = (*Netlink)(nil)
	_ FDBer = (*Recorder)(nil)
)

// FDBEntry is a static forwarding entry.
type FDBEntry struct {
	MAC net.HardwareAddr
	Dst netip.Addr // a vxlan's: the VTEP the MAC is behind
	// Master: the entry is in the bridge the link is a port of, not in
	// the link's own database (a vxlan's).
	Master bool
}

// String renders the entry as `bridge fdb append` takes it, after the MAC
// (and dev): "00:00:00:00:00:00 dst 10.0.0.2 self".
func (e FDBEntry) String() string {
	s := e.MAC.String()
	if e.Dst.IsValid() {
		s += " dst " + e.Dst.String()
	}
	if e.Master {
		return s + " master static"
	}
	return s + " self permanent"
}

// ParseFDBEntry reads an entry as String renders it.
func ParseFDBEntry(s string) (FDBEntry, error) {
	f := strings.Fields(s)
	var e FDBEntry
	if len(f) == 0 {
		return e, fmt.Errorf("fdb entry %q: no MAC", s)
	}
	var err error
	if e.MAC, err = net.ParseMAC(f[0]); err != nil {
		return e, fmt.Errorf("fdb entry %q: %w", s, err)
	}
	for i := 1; i < len(f); i++ {
		switch f[i] {
		case "dst":
			if i+1 == len(f) {
				return e, fmt.Errorf("fdb entry %q: dst has no value", s)
			}
			i++
			if e.Dst, err = netip.ParseAddr(f[i]); err != nil {
				return e, fmt.Errorf("fdb entry %q: %w", s, err)
			}
		case "master":
			e.Master = true
		}
	}
	return e, nil
}

// neigh is e on the link with index i, as the library has it. A vxlan's
// own entries must be permanent; a bridge's are static (NOARP): a
// permanent one would be the bridge's own address.
func (e FDBEntry) neigh(index int) *netlink.Neigh {
	n := &netlink.Neigh{LinkIndex: index, Family: unix.AF_BRIDGE, HardwareAddr: e.MAC, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF}
	if e.Master {
		n.State, n.Flags = netlink.NUD_NOARP, netlink.NTF_MASTER
	}
	if e.Dst.IsValid() {
		n.IP = e.Dst.AsSlice()
	}
	return n
}

// FDBAppend adds e.
//
// Equivalent to: bridge -n $ns fdb append $mac dev $dev [dst $dst] self|master
func (k *Netlink) FDBAppend(ns, dev string, e FDBEntry) error {
	return k.withLink(ns, dev, func(h *netlink.Handle, l netlink.Link) error { return h.NeighAppend(e.neigh(l.Attrs().Index)) })
}

// FDBDel deletes e.
//
// Equivalent to: bridge -n $ns fdb del $mac dev $dev [dst $dst] self|master
func (k *Netlink) FDBDel(ns, dev string, e FDBEntry) error {
	err := k.withLink(ns, dev, func(h *netlink.Handle, l netlink.Link) error { return h.NeighDel(e.neigh(l.Attrs().Index)) })
	if errors.Is(err, ErrNotFound) || errors.Is(err, unix.ENOENT) {
		return nil // gone with its link, or never made
	}
	return err
}

func (r *Recorder) FDBAppend(ns, dev string, e FDBEntry) error {
	if _, err := r.get(ns, dev); err != nil {
		return err
	}
	return r.change("%s fdb append %s dev %s%s", bridgeN(ns), e.MAC, dev, strings.TrimPrefix(e.String(), e.MAC.String()))
}

func (r *Recorder) FDBDel(ns, dev string, e FDBEntry) error {
	if _, err := r.get(ns, dev); err != nil {
		return nil
	}
	return r.change("%s fdb del %s dev %s%s", bridgeN(ns), e.MAC, dev, strings.TrimPrefix(e.String(), e.MAC.String()))
}

// bridgeN is the bridge(8) command for namespace ns.
func bridgeN(ns string) string {
	if ns == Host {
		return "bridge"
	}
	return "bridge -n " + ns
}
