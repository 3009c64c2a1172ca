package builtins

import (
	"bytes"
	"math"
	"math/big"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

// Fuzz tests of the argument parsers: whatever a recipe passes, a parser
// never panics, and what it accepts is what the kernel (or the program
// that uses it) will take. `go test` runs the seeds; to fuzz, e.g.:
//
//	go test -run='^$' -fuzz=FuzzIfName -fuzztime=20s ./builtins

func FuzzIfName(f *testing.F) {
	for _, s := range []string{"veth0", "br-lab", "a.10", "ns-veth2", "123456789012345", "1234567890123456",
		"", ".", "..", "a/b", "a b", "a:b", "a%b", "a\tb", "a\x00b", "ééééééé", "\u00a0", "lo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := validIfName(s)
		var n ifName
		if uerr := n.Unpack(starlark.String(s)); (uerr == nil) != (err == nil) {
			t.Fatalf("%q: validIfName says %v, Unpack %v", s, err, uerr)
		}
		if err != nil {
			return
		}
		if string(n) != s {
			t.Errorf("%q unpacked as %q", s, n)
		}
		if bad := kernelIfNameError(s); bad != "" {
			t.Errorf("%q was accepted, but %s", s, bad)
		}
	})
}

// kernelIfNameError says why the kernel (dev_valid_name) or nsrun's own
// rules would refuse an interface name, or returns "".
func kernelIfNameError(s string) string {
	switch {
	case len(s) == 0 || len(s) > 15:
		return "it is not 1 to 15 bytes long"
	case s == "." || s == ".." || s == "all" || s == "default":
		return "the kernel reserves that name"
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; b {
		case '/', ':', 0:
			return "the kernel refuses " + strconv.QuoteRune(rune(b))
		case '%':
			return "the kernel takes '%' for a format (eth%d)"
		case ' ', '\t', '\n', '\v', '\f', '\r':
			return "the kernel refuses the space " + strconv.QuoteRune(rune(b))
		}
	}
	return ""
}

func FuzzNsName(f *testing.F) {
	for _, s := range []string{"blue", "qrouter-8a6f8d27-5fd2-4b0c-a2f3-1c5e9b3f6d10", "", ".", "..", ".x", "../x",
		"a/b", "a b", "host", "hosts", strings.Repeat("x", 128), strings.Repeat("x", 129), "a\x00b", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var n nsName
		if err := n.Unpack(starlark.String(s)); err != nil {
			return
		}
		if string(n) != s {
			t.Errorf("%q unpacked as %q", s, n)
		}
		// A namespace is the file /run/netns/NAME: the name must stay that file.
		if len(s) == 0 || len(s) > 128 || strings.ContainsAny(s, "/\x00") || strings.HasPrefix(s, ".") || s == "host" {
			t.Errorf("%q was accepted", s)
		}
		if p := filepath.Join("/run/netns", s); filepath.Dir(p) != "/run/netns" || filepath.Base(p) != s {
			t.Errorf("%q was accepted, but /run/netns/%s is %s", s, s, p)
		}
	})
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"192.168.10.21/24", "10.0.0.0/8", "fd00::1/64", "10.0.0.1", "fd00::21", "::ffff:1.2.3.4/120",
		"10.0.0/24", "10.0.0.1/33", "fe80::1%eth0/64", "fe80::1%eth0", "1.2.3", "10.0.0.1/", "/24", "10.0.0.1/024", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePrefix(s)
		var c cidr
		if uerr := c.Unpack(starlark.String(s)); (uerr == nil) != (err == nil) || (err == nil && netip.Prefix(c) != p) {
			t.Fatalf("%q: parsePrefix says %v, %v; Unpack %v, %v", s, p, err, netip.Prefix(c), uerr)
		}
		if err != nil {
			return
		}
		if !p.IsValid() || p.Addr().Zone() != "" {
			t.Fatalf("%q was accepted as %v", s, p)
		}
		if !strings.Contains(s, "/") && p.Bits() != p.Addr().BitLen() {
			t.Errorf("the bare address %q is %v, want a host address", s, p)
		}
		q, err := parsePrefix(p.String())
		if err != nil || q != p {
			t.Errorf("%q is %v, which parses as %v, %v", s, p, q, err)
		}
	})
}

func FuzzMACAddr(f *testing.F) {
	for _, s := range []string{"52:54:00:0d:84:01", "52-54-00-0d-84-01", "5254.000d.8401", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff",
		"00:00:00:00:00:00", "52:54:00:0d:84", "52:54:00:0d:84:01:02:03", "zz:zz:zz:zz:zz:zz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var m macAddr
		if err := m.Unpack(starlark.String(s)); err != nil {
			return
		}
		hw := net.HardwareAddr(m)
		switch {
		case len(hw) != 6:
			t.Errorf("%q was accepted as %d bytes", s, len(hw))
		case hw[0]&1 != 0:
			t.Errorf("%q was accepted, but it is a multicast address", s)
		case bytes.Equal(hw, make([]byte, 6)):
			t.Errorf("%q was accepted, but it is the all-zero address", s)
		}
		if again, err := net.ParseMAC(hw.String()); err != nil || !bytes.Equal(again, hw) {
			t.Errorf("%q is %v, which parses as %v, %v", s, hw, again, err)
		}
	})
}

func FuzzMTU(f *testing.F) {
	for _, n := range []int64{68, 1500, 9000, 65535, 67, 65536, 0, -1, math.MinInt64, math.MaxInt64} {
		f.Add(n, uint8(0))
	}
	f.Add(int64(1), uint8(40))
	f.Fuzz(func(t *testing.T, n int64, shift uint8) {
		x := new(big.Int).Lsh(big.NewInt(n), uint(shift%100)) // beyond int64 too
		var m mtu
		err := m.Unpack(starlark.MakeBigInt(x))
		ok := x.IsInt64() && x.Int64() >= 68 && x.Int64() <= 65535
		switch {
		case err == nil && !ok:
			t.Errorf("%v was accepted as MTU %d", x, m)
		case err == nil && int64(m) != x.Int64():
			t.Errorf("%v was unpacked as %d", x, m)
		case err != nil && ok:
			t.Errorf("%v was refused: %v", x, err)
		case err != nil && !strings.Contains(err.Error(), x.String()):
			t.Errorf("the error for %v does not name it: %v", x, err)
		}
	})
}

func FuzzDuration(f *testing.F) {
	for _, s := range []string{"1s", "200ms", "1.5s", "1h", "0s", "-1s", "soon", "", "1"} {
		f.Add(s, 1.0, int64(1))
	}
	f.Add("30s", 0.2, int64(30))
	f.Add("1ns", 0.0, int64(0))
	f.Add("1m", -1.5, int64(-1))
	f.Add("2562047h", 9e9, int64(9e9)) // near the largest time.Duration
	f.Fuzz(func(t *testing.T, s string, x float64, n int64) {
		check := func(v starlark.Value, want func(time.Duration) bool) {
			var d duration
			if err := d.Unpack(v); err == nil && (d <= 0 || !want(time.Duration(d))) {
				t.Errorf("%v was accepted as %v", v, time.Duration(d))
			}
		}
		check(starlark.String(s), func(d time.Duration) bool {
			p, err := time.ParseDuration(s)
			return err == nil && p == d
		})
		// A number of seconds, within a nanosecond's rounding.
		check(starlark.Float(x), func(d time.Duration) bool { return math.Abs(d.Seconds()-x) <= 1e-9*math.Max(1, x) })
		check(starlark.MakeInt64(n), func(d time.Duration) bool { return d.Seconds() == float64(n) })
	})
}

func FuzzArgvList(f *testing.F) {
	for _, s := range []string{"ip -br addr", "echo $PATH | tr : '\\n'", "", "sleep\x0030", "\x00", "a\x00\x00b"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, list bool) {
		var v starlark.Value = starlark.String(s)
		want := []string{"/bin/sh", "-c", s}
		if list { // NUL separates the elements, as in /proc/PID/cmdline
			want = nil
			var elems []starlark.Value
			if s != "" {
				want = strings.Split(s, "\x00")
			}
			for _, e := range want {
				elems = append(elems, starlark.String(e))
			}
			v = starlark.NewList(elems)
		}
		var a argvList
		err := a.Unpack(v)
		if empty := s == "" || (list && len(want) == 0); empty != (err != nil) {
			t.Fatalf("%v: error %v", v, err)
		}
		if err == nil && !slices.Equal(a, want) {
			t.Errorf("%v unpacked as %q, want %q", v, []string(a), want)
		}
	})
}
