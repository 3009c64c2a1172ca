package builtins

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// For optional parameters, None means "not given", so that library functions
// can pass their own defaults through.
//
// The types here implement starlark.Unpacker, so that every builtin validates
// its arguments the same way, before it touches the kernel, and the error
// names the builtin and the parameter:
//
//	veth: for parameter name: "averyveryverylongname" is longer than 15 bytes

// ifName is an interface name as the kernel accepts it.
type ifName string

func (n *ifName) Unpack(v starlark.Value) error {
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want string", v.Type())
	}
	if err := validIfName(s); err != nil {
		return err
	}
	*n = ifName(s)
	return nil
}

func validIfName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("an interface name cannot be empty")
	case len(s) > 15:
		return fmt.Errorf("%q is longer than 15 bytes", s)
	case s == "." || s == "..":
		return fmt.Errorf("%q is not a valid interface name", s)
	case s == "all" || s == "default":
		// They name the per-family settings in /proc/sys/net/*/conf.
		return fmt.Errorf("%q is not a valid interface name (the kernel reserves it)", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r == '%' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%q: an interface name cannot contain %q", s, r)
		}
	}
	return nil
}

// nsName is a namespace name: a file name under /run/netns.
type nsName string

func (n *nsName) Unpack(v starlark.Value) error {
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want string", v.Type())
	}
	switch {
	case s == "":
		return fmt.Errorf("a namespace name cannot be empty")
	case len(s) > 128:
		return fmt.Errorf("%q is longer than 128 bytes", s)
	case s == "." || s == ".." || strings.HasPrefix(s, "."):
		return fmt.Errorf("%q: a namespace name cannot start with '.'", s)
	case s == "host":
		return fmt.Errorf(`"host" names the namespace nsrun runs in: use host()`)
	}
	for _, r := range s {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%q: a namespace name cannot contain %q", s, r)
		}
	}
	*n = nsName(s)
	return nil
}

// cidr is an interface address with its prefix length, "192.168.10.21/24";
// a bare address is a host address (/32 or /128), as iproute2 takes it.
type cidr netip.Prefix

func (c *cidr) Unpack(v starlark.Value) error {
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want string", v.Type())
	}
	p, err := parsePrefix(s)
	if err != nil {
		return err
	}
	*c = cidr(p)
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a valid CIDR (want e.g. 192.168.10.21/24 or fd00::1/64)", s)
	}
	return p, nil
}

// ipAddr is an IPv4 or IPv6 address without a prefix.
type ipAddr netip.Addr

func (a *ipAddr) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want string", v.Type())
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	*a = ipAddr(ip)
	return nil
}

// macAddr is a unicast Ethernet address.
type macAddr net.HardwareAddr

func (m *macAddr) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want string", v.Type())
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("%q is not a MAC address (want e.g. 52:54:00:0d:84:01)", s)
	}
	if hw[0]&1 != 0 {
		return fmt.Errorf("%q is a multicast address; a link needs a unicast one", s)
	}
	if bytes.Equal(hw, make([]byte, 6)) {
		return fmt.Errorf("%q is not a usable link address", s)
	}
	*m = macAddr(hw)
	return nil
}

// mtu is a link MTU.
type mtu int

func (m *mtu) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	i, ok := v.(starlark.Int)
	if !ok {
		return fmt.Errorf("got %s, want int", v.Type())
	}
	n, ok := i.Int64()
	if !ok || n < 68 || n > 65535 {
		return fmt.Errorf("%s is not an MTU (68 to 65535)", i)
	}
	*m = mtu(n)
	return nil
}

// duration is a string such as "1.5s" or "200ms", or a number of seconds.
type duration time.Duration

func (d *duration) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.String:
		t, err := time.ParseDuration(string(v))
		if err != nil || t < time.Millisecond {
			return fmt.Errorf("%q is not a positive duration of at least 1ms (want e.g. \"1s\", \"500ms\")", string(v))
		}
		*d = duration(t)
		return nil
	case starlark.Int, starlark.Float:
		f, _ := starlark.AsFloat(v)
		if !(f >= 0.001) || f*float64(time.Second) >= math.MaxInt64 {
			return fmt.Errorf("%v is not a number of seconds from 0.001 (a millisecond) to 292 years", v)
		}
		*d = duration(time.Duration(f * float64(time.Second)))
		return nil
	}
	return fmt.Errorf("got %s, want duration string or seconds", v.Type())
}

// argvList is a command: a list of strings run directly, or a string run by
// /bin/sh -c.
type argvList []string

func (a *argvList) Unpack(v starlark.Value) error {
	if s, ok := starlark.AsString(v); ok {
		if s == "" {
			return fmt.Errorf("empty command")
		}
		*a = []string{"/bin/sh", "-c", s}
		return nil
	}
	iter := starlark.Iterate(v)
	if iter == nil {
		return fmt.Errorf("got %s, want list of strings or string", v.Type())
	}
	defer iter.Done()
	var out []string
	var x starlark.Value
	for iter.Next(&x) {
		s, ok := starlark.AsString(x)
		if !ok {
			return fmt.Errorf("command element %d is %s, want string", len(out), x.Type())
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return fmt.Errorf("empty command")
	}
	*a = out
	return nil
}

// nsArg is an optional namespace parameter: a netns value, or None.
type nsArg struct{ ns *Netns }

func (n *nsArg) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.NoneType:
		return nil
	case *Netns:
		n.ns = v
		return nil
	}
	return fmt.Errorf("got %s, want netns", v.Type())
}

// sameness answers == and != for values that are equal when they are the
// same object; other comparisons are errors, as for Starlark's own
// unordered types.
func sameness(op syntax.Token, same bool, x, y starlark.Value) (bool, error) {
	switch op {
	case syntax.EQL:
		return same, nil
	case syntax.NEQ:
		return !same, nil
	}
	return false, fmt.Errorf("%s %s %s not implemented", x.Type(), op, y.Type())
}
