package probe

import (
	"encoding/binary"
	"fmt"
)

// ICMP types nsrun sends, expects or reports.
const (
	icmpEchoReply     = 0
	icmpUnreach       = 3
	icmpEcho          = 8
	icmpTimeExceeded  = 11
	icmpParamProblem  = 12
	icmp6Unreach      = 1
	icmp6TooBig       = 2
	icmp6TimeExceeded = 3
	icmp6ParamProblem = 4
	icmp6Echo         = 128
	icmp6EchoReply    = 129
)

// echo builds an ICMP (v6=false) or ICMPv6 echo request. The kernel fills in
// an ICMPv6 checksum itself; an ICMP one is ours to compute.
func echo(v6 bool, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = icmpEcho
	if v6 {
		b[0] = icmp6Echo
	}
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	if !v6 {
		binary.BigEndian.PutUint16(b[2:], checksum(b))
	}
	return b
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// echoHeader parses the type, id and sequence of an ICMP message.
func echoHeader(b []byte) (typ uint8, id, seq uint16, ok bool) {
	if len(b) < 8 {
		return 0, 0, 0, false
	}
	return b[0], binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), true
}

// icmpError names an ICMP error as ping(8) does, lowercased. The IPv6
// "address unreachable" (neighbour discovery got no answer) is reported as
// IPv4's "destination host unreachable" (ARP got no answer): it is the same
// event, and recipes test for one string.
func icmpError(v6 bool, typ, code uint8) string {
	if !v6 {
		switch typ {
		case icmpUnreach:
			switch code {
			case 0:
				return "destination network unreachable"
			case 1:
				return "destination host unreachable"
			case 2:
				return "destination protocol unreachable"
			case 3:
				return "destination port unreachable"
			case 4:
				return "fragmentation needed"
			case 9, 10, 13:
				return "communication administratively prohibited"
			}
			return fmt.Sprintf("destination unreachable (code %d)", code)
		case icmpTimeExceeded:
			return "time to live exceeded"
		case icmpParamProblem:
			return "parameter problem"
		}
		return fmt.Sprintf("icmp error (type %d, code %d)", typ, code)
	}
	switch typ {
	case icmp6Unreach:
		switch code {
		case 0:
			return "destination network unreachable"
		case 1:
			return "communication administratively prohibited"
		case 3:
			return "destination host unreachable"
		case 4:
			return "destination port unreachable"
		case 5, 6:
			return "communication administratively prohibited"
		}
		return fmt.Sprintf("destination unreachable (code %d)", code)
	case icmp6TooBig:
		return "packet too big"
	case icmp6TimeExceeded:
		return "time to live exceeded"
	case icmp6ParamProblem:
		return "parameter problem"
	}
	return fmt.Sprintf("icmp6 error (type %d, code %d)", typ, code)
}
