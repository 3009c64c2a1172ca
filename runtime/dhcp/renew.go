package dhcp

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/runtime/nsexec"
)

// RenewCommand is the internal command that keeps a lease: argv[0] of the
// process dhcp_client starts for it, a process of the lab.
const RenewCommand = nsexec.InternalPrefix + "dhcp-client"

func init() { nsexec.RegisterInternal("dhcp-client", renewMain) }

// Held is what a lease's keeper reports of it, in its state file (JSON):
// inspect shows it.
type Held struct {
	Link     string    `json:"link"`
	Addr     string    `json:"addr"`
	Server   string    `json:"server"`
	LeaseS   int       `json:"lease_s"`
	Renewals int       `json:"renewals"`
	Renewed  time.Time `json:"renewed"` // when the lease was last granted
	Expires  time.Time `json:"expires"`
	Error    string    `json:"error,omitempty"` // why the last renewal failed
}

// RenewArgs writes lease l, on link, where its keeper reads it (beside its
// state file, state) and returns the keeper's argv.
func RenewArgs(l Lease, link, state string) ([]string, error) {
	packets := strings.TrimSuffix(state, ".json") + ".lease"
	b, _ := json.Marshal(map[string]string{"offer": hex.EncodeToString(l.Offer), "ack": hex.EncodeToString(l.ACK)})
	if err := os.WriteFile(packets, b, 0o600); err != nil {
		return nil, err
	}
	return []string{RenewCommand, "-link", link, "-lease", packets, "-state", state}, nil
}

// ReadHeld reads the state files of the leases kept in dir.
func ReadHeld(dir string) []Held {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	var out []Held
	for _, p := range paths {
		var h Held
		if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &h) == nil {
			out = append(out, h)
		}
	}
	return out
}

// renewMain runs in a helper process inside the link's namespace. It gives
// the address the lease's lifetime, so that the kernel removes it when the
// lease ends, and renews the lease at its renewal time (T1), and again
// until it expires; each renewal extends the address's lifetime. SIGTERM
// (teardown) ends it.
func renewMain(args []string) int {
	fs := flag.NewFlagSet("dhcp-client", flag.ContinueOnError)
	link := fs.String("link", "", "")
	state := fs.String("state", "", "")
	packets := fs.String("lease", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	lease, err := readLease(*packets)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dhcp-client: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	h := Held{Link: *link}
	for {
		l, err := leaseOf(lease.ACK)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dhcp-client: %v\n", err)
			return 1
		}
		h.Addr, h.Server, h.LeaseS = l.Addr.String(), l.Server.String(), int(l.Time/time.Second)
		h.Renewed, h.Expires = lease.CreationTime, lease.CreationTime.Add(l.Time)
		if err := setLifetime(*link, l, time.Until(h.Expires)); err != nil {
			fmt.Fprintf(os.Stderr, "dhcp-client: giving %s its lifetime: %v\n", l.Addr, err)
		}
		writeHeld(*state, h)
		// Renew at T1 (half the lease unless the server says), then, failing,
		// every while until the lease ends.
		t1 := lease.ACK.IPAddressRenewalTime(l.Time / 2)
		next := lease.CreationTime.Add(t1)
		for {
			select {
			case <-ctx.Done():
				return 0
			case <-time.After(time.Until(next)):
			}
			renewed, err := renew(ctx, *link, lease)
			if err == nil {
				lease = renewed
				h.Renewals++
				h.Error = ""
				fmt.Printf("renewed %s on %s for %s (renewal %d)\n", h.Addr, *link, renewed.ACK.IPAddressLeaseTime(0), h.Renewals)
				break
			}
			h.Error = err.Error()
			writeHeld(*state, h)
			left := time.Until(h.Expires)
			if left <= 0 {
				fmt.Printf("the lease of %s on %s expired: %v\n", h.Addr, *link, err)
				<-ctx.Done()
				return 0
			}
			fmt.Printf("renewing %s on %s: %v (retrying; it expires in %s)\n", h.Addr, *link, err, left.Round(time.Second))
			next = time.Now().Add(min(max(left/2, time.Second), 30*time.Second))
		}
	}
}

func readLease(path string) (*nclient4.Lease, error) {
	var p struct{ Offer, ACK string }
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the lease: %w", err)
	}
	ob, err1 := hex.DecodeString(p.Offer)
	ab, err2 := hex.DecodeString(p.ACK)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("bad lease packets")
	}
	offer, err := dhcpv4.FromBytes(ob)
	if err != nil {
		return nil, fmt.Errorf("the offer: %w", err)
	}
	ack, err := dhcpv4.FromBytes(ab)
	if err != nil {
		return nil, fmt.Errorf("the ack: %w", err)
	}
	return &nclient4.Lease{Offer: offer, ACK: ack, CreationTime: time.Now()}, nil
}

// renew asks the lease's server to extend it.
func renew(ctx context.Context, link string, lease *nclient4.Lease) (*nclient4.Lease, error) {
	ifc, err := net.InterfaceByName(link)
	if err != nil {
		return nil, err
	}
	conn, err := nclient4.NewRawUDPConn(link, dhcpv4.ClientPort)
	if err != nil {
		return nil, err
	}
	c, err := nclient4.NewWithConn(conn, ifc.HardwareAddr, nclient4.WithTimeout(tryTimeout), nclient4.WithRetry(3))
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*tryTimeout)
	defer cancel()
	return c.Renew(ctx, lease)
}

// setLifetime gives the leased address on link the lifetime left: the
// kernel removes it when that ends.
func setLifetime(link string, l Lease, left time.Duration) error {
	nl, err := netlink.LinkByName(link)
	if err != nil {
		return err
	}
	secs := max(int(left/time.Second), 1)
	a := &netlink.Addr{IPNet: &net.IPNet{IP: l.Addr.Addr().AsSlice(), Mask: net.CIDRMask(l.Addr.Bits(), 32)}, ValidLft: secs, PreferedLft: secs}
	return netlink.AddrReplace(nl, a)
}

func writeHeld(path string, h Held) {
	b, _ := json.Marshal(h)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, path)
	}
}
