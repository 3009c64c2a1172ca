package probe

import (
	"reflect"
	"strings"
	"testing"
)

// A capture filter comes from a recipe: any string. The parser never panics;
// a filter it accepts re-parses the same from its String() and from its
// terms written out canonically.
//
//	go test -run='^$' -fuzz=FuzzParseFilter -fuzztime=20s ./runtime/probe
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "icmp", "icmp and host 10.0.0.2", "arp and host 192.168.10.1", "ip6 and icmp6 and host fd00::1",
		"host ::ffff:10.0.0.1", "  tcp   and  udp ", "icmp or tcp", "and", "icmp and", "host", "host fe80::1%eth0", "HOST 1.2.3.4", "not icmp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			return
		}
		again, err := ParseFilter(flt.String())
		if err != nil || !reflect.DeepEqual(again.terms, flt.terms) {
			t.Errorf("%q: String() %q parses as %v, %v; want %v", s, flt.String(), again.terms, err, flt.terms)
		}
		canon, err := ParseFilter(canonical(flt))
		if err != nil || !reflect.DeepEqual(canon.terms, flt.terms) {
			t.Errorf("%q: %q parses as %v, %v; want %v", s, canonical(flt), canon.terms, err, flt.terms)
		}
		for _, term := range flt.terms {
			if term.class == "host" && (!term.addr.IsValid() || term.addr.Zone() != "" || term.addr.Is4In6()) {
				t.Errorf("%q: host term %v", s, term.addr)
			}
		}
	})
}

// canonical writes a filter's terms out: "icmp and host 10.0.0.2".
func canonical(f Filter) string {
	var words []string
	for _, t := range f.terms {
		if t.class == "host" {
			words = append(words, "host "+t.addr.String())
		} else {
			words = append(words, t.class)
		}
	}
	return strings.Join(words, " and ")
}

// Frames come off the wire: decode never panics, and a frame belongs to at
// least one class. Matching never panics either.
func FuzzDecode(f *testing.F) {
	eth := func(etype string, payload string) []byte {
		return []byte("\xff\xff\xff\xff\xff\xff\x52\x54\x00\x0d\x84\x01" + etype + payload)
	}
	f.Add(eth("\x08\x06", "\x00\x01\x08\x00\x06\x04\x00\x01\x52\x54\x00\x0d\x84\x01\x0a\x00\x00\x01\x00\x00\x00\x00\x00\x00\x0a\x00\x00\x02"))
	f.Add(eth("\x08\x00", "\x45\x00\x00\x1c\x00\x00\x00\x00\x40\x01\x00\x00\x0a\x00\x00\x01\x0a\x00\x00\x02\x08\x00\xf7\xff\x00\x00\x00\x00"))
	f.Add(eth("\x86\xdd", "\x60\x00\x00\x00\x00\x08\x00\x01"+strings.Repeat("\xfd", 32)+"\x3a\x00\x05\x02\x00\x00\x01\x00"))
	f.Add(eth("\x81\x00", "\x00\x0a\x08\x00\x45"))
	f.Add([]byte{})
	f.Add(eth("\x88\xcc", ""))
	filters := []Filter{{}}
	for _, s := range []string{"icmp and host 10.0.0.2", "arp and host 10.0.0.1", "icmp6", "tcp and udp"} {
		flt, err := ParseFilter(s)
		if err != nil {
			f.Fatal(err)
		}
		filters = append(filters, flt)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		p := decode(frame)
		if len(p.classes) == 0 {
			t.Errorf("% x is in no class", frame)
		}
		for _, flt := range filters {
			flt.match(p)
		}
	})
}
