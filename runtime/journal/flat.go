package journal

import (
	"bytes"
	"net/netip"
)

// flatRecord reads a record as write writes the most common ones: one line
// of one JSON object whose values are all plain strings, numbers or
// booleans, with no space, escape or byte past ASCII. It reports false for
// any other line, which the JSON decoder reads: what it reads, it reads as
// json.Unmarshal does, several times faster (a big lab's journal is
// read by every apply, down and recover).
func flatRecord(line []byte, s *Step) bool {
	b, ok := bytes.CutPrefix(line, []byte{'{'})
	if !ok {
		return false
	}
	if b, ok = bytes.CutSuffix(b, []byte("}\n")); !ok || len(b) == 0 {
		return false
	}
	var out Step
	for {
		if len(b) < 2 || b[0] != '"' {
			return false
		}
		k := bytes.IndexByte(b[1:], '"')
		if k < 0 || len(b) < k+3 || b[k+2] != ':' {
			return false
		}
		key, rest := b[1:k+1], b[k+3:]
		var v []byte
		if len(rest) > 0 && rest[0] == '"' {
			end := bytes.IndexByte(rest[1:], '"')
			if end < 0 {
				return false
			}
			v, b = rest[1:end+1], rest[end+2:]
			if !plain(v) || !setString(&out, string(key), v) {
				return false
			}
		} else {
			end := bytes.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			v, b = rest[:end], rest[end:]
			if !setScalar(&out, string(key), v) {
				return false
			}
		}
		if len(b) == 0 {
			break
		}
		if b[0] != ',' {
			return false
		}
		b = b[1:]
	}
	*s = out
	return true
}

// plain reports whether a JSON string's bytes are its value as they are:
// printable ASCII with no escape.
func plain(v []byte) bool {
	for _, c := range v {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// setString sets the string field of s whose JSON name is key.
func setString(s *Step, key string, v []byte) bool {
	var f *string
	switch key {
	case "state":
		f = &s.State
	case "pos":
		f = &s.Pos
	case "op":
		f = &s.Op
	case "ns":
		f = &s.NS
	case "name":
		f = &s.Name
	case "kind":
		f = &s.Kind
	case "alias":
		f = &s.Alias
	case "mac":
		f = &s.MAC
	case "peer_ns":
		f = &s.PeerNS
	case "peer":
		f = &s.PeerName
	case "peer_mac":
		f = &s.PeerMAC
	case "parent_ns":
		f = &s.ParentNS
	case "parent":
		f = &s.Parent
	case "mode":
		f = &s.Mode
	case "old":
		f = &s.Old
	case "new":
		f = &s.New
	case "path":
		f = &s.Path
	case "sum":
		f = &s.Sum
	case "on":
		f = &s.On
	case "addr":
		if len(v) == 0 {
			return false // the decoder's business
		}
		p, err := netip.ParsePrefix(string(v))
		if err != nil {
			return false
		}
		s.Addr = p
		return true
	default:
		return false
	}
	*f = string(v)
	return true
}

// setScalar sets the number or boolean field of s whose JSON name is key.
func setScalar(s *Step, key string, v []byte) bool {
	if key == "away" {
		switch string(v) {
		case "true":
			s.Away = true
		case "false":
			s.Away = false
		default:
			return false
		}
		return true
	}
	n, ok := natural(v)
	if !ok {
		return false
	}
	switch key {
	case "seq":
		s.Seq = int(n)
	case "pid":
		s.Pid = int(n)
	case "vni":
		s.VNI = int(n)
	case "ino":
		s.Ino = n
	case "mnt":
		s.Mnt = n
	case "pin":
		s.Pin = n
	case "start":
		s.Start = n
	default:
		return false
	}
	return true
}

// natural reads a JSON number that is a natural number of at most 18
// digits (one that fits every field it is read into).
func natural(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 18 || v[0] == '0' && len(v) > 1 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
