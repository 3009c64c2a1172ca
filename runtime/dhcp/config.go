package dhcp

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
)

// Config is what a server hands out on one link.
type Config struct {
	Link       string
	Start, End netip.Addr   // the pool, in order
	Subnet     netip.Prefix // invalid: that of the link's address that holds the pool
	Router     netip.Addr   // invalid: none
	DNS        []netip.Addr
	Lease      time.Duration
}

// Validate checks what can be checked without looking at the link.
func (c Config) Validate() error {
	switch {
	case c.Link == "":
		return errors.New("no link")
	case !c.Start.Is4() || !c.End.Is4():
		return fmt.Errorf("the range %s-%s is not of IPv4 addresses", c.Start, c.End)
	case c.End.Less(c.Start):
		return fmt.Errorf("the range %s-%s ends before it starts", c.Start, c.End)
	case c.Lease < time.Second || c.Lease > 0xffffffff*time.Second:
		return fmt.Errorf("a lease of %s is not between 1s and 136 years", c.Lease)
	case c.Router.IsValid() && !c.Router.Is4():
		return fmt.Errorf("router %s is not an IPv4 address", c.Router)
	}
	for _, d := range c.DNS {
		if !d.Is4() {
			return fmt.Errorf("dns %s is not an IPv4 address", d)
		}
	}
	if c.Subnet.IsValid() {
		return c.checkSubnet(c.Subnet)
	}
	return nil
}

// checkSubnet checks that the pool and the router are in subnet.
func (c Config) checkSubnet(subnet netip.Prefix) error {
	if !subnet.Addr().Is4() {
		return fmt.Errorf("subnet %s is not IPv4", subnet)
	}
	if !subnet.Contains(c.Start) || !subnet.Contains(c.End) {
		return fmt.Errorf("the range %s-%s is not inside subnet %s", c.Start, c.End, subnet.Masked())
	}
	if c.Router.IsValid() && !subnet.Contains(c.Router) {
		return fmt.Errorf("router %s is not inside subnet %s", c.Router, subnet.Masked())
	}
	return nil
}

// Args renders the configuration as the server's command line.
func (c Config) Args() []string {
	a := []string{"-link", c.Link, "-range", c.Start.String() + "-" + c.End.String(), "-lease", c.Lease.String()}
	if c.Subnet.IsValid() {
		a = append(a, "-subnet", c.Subnet.String())
	}
	if c.Router.IsValid() {
		a = append(a, "-router", c.Router.String())
	}
	for _, d := range c.DNS {
		a = append(a, "-dns", d.String())
	}
	return a
}

// parseArgs reads the server's command line: the configuration, and where to
// report readiness.
func parseArgs(args []string) (c Config, ready string, err error) {
	fs := flag.NewFlagSet("dhcp-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Link, "link", "", "link to serve")
	rng := fs.String("range", "", "first-last")
	fs.DurationVar(&c.Lease, "lease", time.Hour, "lease time")
	fs.Func("subnet", "subnet", func(s string) (err error) { c.Subnet, err = netip.ParsePrefix(s); return })
	fs.Func("router", "router", func(s string) (err error) { c.Router, err = netip.ParseAddr(s); return })
	fs.Func("dns", "dns server", func(s string) error {
		a, err := netip.ParseAddr(s)
		c.DNS = append(c.DNS, a)
		return err
	})
	fs.StringVar(&ready, "ready", "", "unix socket to report readiness to")
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	first, last, ok := strings.Cut(*rng, "-")
	if !ok {
		return c, "", fmt.Errorf("-range %q: want first-last", *rng)
	}
	if c.Start, err = netip.ParseAddr(first); err != nil {
		return c, "", err
	}
	if c.End, err = netip.ParseAddr(last); err != nil {
		return c, "", err
	}
	return c, ready, c.Validate()
}
