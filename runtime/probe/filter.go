package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Filter selects the packets a capture counts and writes: a conjunction of
// terms, in a small subset of tcpdump's syntax:
//
//	arp | ip | ip6 | icmp | icmp6 | tcp | udp | host ADDR
//
// joined by "and", e.g. "icmp and host 10.0.0.2". As in tcpdump, "ip" and
// "icmp" are IPv4 only, "ip6" and "icmp6" IPv6 only, "tcp" and "udp" either
// family, and "host ADDR" matches the source or destination of an IPv4 or
// IPv6 packet, or the sender or target of an ARP packet. The zero Filter
// matches everything.
type Filter struct {
	terms []term
	src   string
}

type term struct {
	class string     // one of classes, or "host"
	addr  netip.Addr // for "host"
}

// Classes are the protocol classes a capture counts, in report order. A
// packet counts in every class it belongs to: an ICMP echo in "ip" and
// "icmp"; "other" holds what is neither ARP nor IP.
var Classes = []string{"arp", "ip", "ip6", "icmp", "icmp6", "tcp", "udp", "other"}

// ParseFilter parses a filter expression; "" matches everything.
func ParseFilter(s string) (Filter, error) {
	f := Filter{src: s}
	words := strings.Fields(s)
	for i := 0; i < len(words); i++ {
		if len(f.terms) > 0 {
			if words[i] != "and" {
				return Filter{}, fmt.Errorf("filter %q: want \"and\" before %q (terms: %s, host ADDR)", s, words[i], strings.Join(Classes[:7], ", "))
			}
			if i++; i == len(words) {
				return Filter{}, fmt.Errorf("filter %q: a term must follow \"and\"", s)
			}
		}
		w := words[i]
		switch w {
		case "arp", "ip", "ip6", "icmp", "icmp6", "tcp", "udp":
			f.terms = append(f.terms, term{class: w})
		case "host":
			if i++; i == len(words) {
				return Filter{}, fmt.Errorf("filter %q: \"host\" needs an address", s)
			}
			a, err := netip.ParseAddr(words[i])
			if err != nil || a.Zone() != "" {
				return Filter{}, fmt.Errorf("filter %q: %q is not an IP address", s, words[i])
			}
			f.terms = append(f.terms, term{class: "host", addr: a.Unmap()})
		default:
			return Filter{}, fmt.Errorf("filter %q: unknown term %q (terms: %s, host ADDR; joined by \"and\")", s, w, strings.Join(Classes[:7], ", "))
		}
	}
	return f, nil
}

// String returns the expression the filter was parsed from.
func (f Filter) String() string { return f.src }

// packet is what a filter looks at in an Ethernet frame.
type packet struct {
	classes  map[string]bool
	src, dst netip.Addr // IP source and destination; ARP sender and target
}

// decode reads an Ethernet frame, through one 802.1Q tag, and the IPv6
// extension headers that precede ICMPv6 in MLD and NDP.
func decode(frame []byte) packet {
	p := packet{classes: map[string]bool{}}
	if len(frame) < 14 {
		p.classes["other"] = true
		return p
	}
	etype, b := binary.BigEndian.Uint16(frame[12:]), frame[14:]
	if etype == 0x8100 && len(b) >= 4 {
		etype, b = binary.BigEndian.Uint16(b[2:]), b[4:]
	}
	switch etype {
	case 0x0806:
		p.classes["arp"] = true
		// Ethernet/IPv4 ARP: hardware length 6, protocol length 4.
		if len(b) >= 28 && b[4] == 6 && b[5] == 4 {
			p.src, p.dst = netip.AddrFrom4([4]byte(b[14:18])), netip.AddrFrom4([4]byte(b[24:28]))
		}
	case 0x0800:
		p.classes["ip"] = true
		if len(b) < 20 {
			break
		}
		p.src, p.dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		switch b[9] {
		case 1:
			p.classes["icmp"] = true
		case 6:
			p.classes["tcp"] = true
		case 17:
			p.classes["udp"] = true
		}
	case 0x86dd:
		p.classes["ip6"] = true
		if len(b) < 40 {
			break
		}
		p.src, p.dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		next, h := b[6], b[40:]
		for (next == 0 || next == 43 || next == 60) && len(h) >= 8 { // hop-by-hop, routing, destination options
			n := 8 * (int(h[1]) + 1)
			if n > len(h) {
				break
			}
			next, h = h[0], h[n:]
		}
		switch next {
		case 58:
			p.classes["icmp6"] = true
		case 6:
			p.classes["tcp"] = true
		case 17:
			p.classes["udp"] = true
		}
	default:
		p.classes["other"] = true
	}
	return p
}

// match reports whether the packet passes every term.
func (f Filter) match(p packet) bool {
	for _, t := range f.terms {
		if t.class == "host" {
			if !p.src.IsValid() || (p.src != t.addr && p.dst != t.addr) {
				return false
			}
		} else if !p.classes[t.class] {
			return false
		}
	}
	return true
}
