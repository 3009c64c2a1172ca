package kernel

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A Shaper shapes what a link sends: its root qdisc.
type Shaper interface {
	// SetShape makes s the link's shaping, in place of what it had (tc
	// qdisc replace); the zero Shape removes it (the kernel's default
	// qdisc comes back).
	SetShape(ns, dev string, s Shape) error
	// HasQdisc reports whether the kernel has the qdisc kind, finding out
	// without changing anything of the machine's or a lab's.
	HasQdisc(kind string) (bool, error)
}

// A ShapeLister reads the shaping of a namespace's links, by link name.
type ShapeLister interface {
	Shapes(ns string) (map[string]Shape, error)
}

var (
	_ Shaper      = (*Netlink)(nil)
	_ Shaper      = (*Recorder)(nil)
	_ ShapeLister = (*Netlink)(nil)
	_ ShapeLister = (*Recorder)(nil)
)

// Shape is how a link's sending is shaped: a token bucket (TBF) for a rate
// alone; netem, where the kernel has it, for a delay, jitter or loss (with
// the rate, if any, its own). The zero Shape is none.
type Shape struct {
	Rate    uint64        // bits per second
	Burst   uint32        // bytes the bucket holds; 0: what Rate sends in 10 ms, at least 16 KiB
	Latency time.Duration // the longest a packet waits in the bucket's queue; 0: 50 ms
	Delay   time.Duration
	Jitter  time.Duration
	Loss    float64 // percent
}

// IsZero reports whether s is no shaping.
func (s Shape) IsZero() bool { return s == Shape{} }

// Near reports whether s, read back from the kernel, is o as it was made:
// the kernel keeps a bucket's size as the time its rate takes to send it,
// and a queue's length in bytes, so they come back within a few bytes and
// a millisecond.
func (s Shape) Near(o Shape) bool {
	near := func(a, b, slack float64) bool { return math.Abs(a-b) <= slack }
	return s.Qdisc() == o.Qdisc() && s.Rate == o.Rate && s.Delay == o.Delay && s.Jitter == o.Jitter &&
		near(s.Loss, o.Loss, 0.01) &&
		near(float64(s.burst()), float64(o.burst()), max(16, float64(o.burst())/200)) &&
		(s.Qdisc() != "tbf" || near(float64(s.latency()), float64(o.latency()), float64(time.Millisecond)))
}

// Qdisc is the kind of qdisc s needs: "tbf", "netem", or "" for none.
func (s Shape) Qdisc() string {
	switch {
	case s.IsZero():
		return ""
	case s.Delay > 0 || s.Jitter > 0 || s.Loss > 0:
		return "netem"
	}
	return "tbf"
}

// burst is the bucket's size, as made.
func (s Shape) burst() uint32 {
	if s.Burst > 0 {
		return s.Burst
	}
	return max(uint32(s.Rate/8/100), 16<<10)
}

func (s Shape) latency() time.Duration {
	if s.Latency > 0 {
		return s.Latency
	}
	return 50 * time.Millisecond
}

// String renders s as `tc qdisc replace dev DEV root` takes it after
// the device: "tbf rate 50mbit burst 62500b latency 50ms". "" is none.
func (s Shape) String() string {
	switch s.Qdisc() {
	case "":
		return ""
	case "tbf":
		return fmt.Sprintf("tbf rate %s burst %db latency %s", FormatRate(s.Rate), s.burst(), tcTime(s.latency()))
	}
	b := []string{"netem"}
	if s.Delay > 0 || s.Jitter > 0 {
		b = append(b, "delay", tcTime(s.Delay))
		if s.Jitter > 0 {
			b = append(b, tcTime(s.Jitter))
		}
	}
	if s.Loss > 0 {
		b = append(b, "loss", strconv.FormatFloat(s.Loss, 'g', -1, 64)+"%")
	}
	if s.Rate > 0 {
		b = append(b, "rate", FormatRate(s.Rate))
	}
	return strings.Join(b, " ")
}

// ParseShape reads a shaping as String renders it.
func ParseShape(text string) (Shape, error) {
	var s Shape
	f := strings.Fields(text)
	if len(f) == 0 {
		return s, nil
	}
	bad := func(err error) (Shape, error) { return Shape{}, fmt.Errorf("shaping %q: %w", text, err) }
	for i := 1; i < len(f); i++ {
		if i+1 == len(f) {
			return bad(fmt.Errorf("%s has no value", f[i]))
		}
		key, v := f[i], f[i+1]
		i++
		var err error
		switch key {
		case "rate":
			s.Rate, err = ParseRate(v)
		case "burst":
			var n uint64
			n, err = strconv.ParseUint(strings.TrimSuffix(v, "b"), 10, 32)
			s.Burst = uint32(n)
		case "latency":
			s.Latency, err = time.ParseDuration(v)
		case "delay":
			s.Delay, err = time.ParseDuration(v)
			if err == nil && i+1 < len(f) && f[i+1] != "loss" && f[i+1] != "rate" {
				i++
				s.Jitter, err = time.ParseDuration(f[i])
			}
		case "loss":
			s.Loss, err = strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		default:
			err = fmt.Errorf("unknown setting %q", key)
		}
		if err != nil {
			return bad(err)
		}
	}
	return s, nil
}

// tcTime renders a duration as tc takes it: "50ms", "1.5ms", "2s".
func tcTime(d time.Duration) string {
	switch {
	case d%time.Second == 0 && d > 0:
		return fmt.Sprintf("%ds", d/time.Second)
	case d%time.Millisecond == 0:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', -1, 64) + "ms"
}

// The rate units of tc(8): bits, and bytes (bps) per second, by powers
// of 1000.
var rateUnits = []struct {
	suffix string
	bits   uint64
}{
	{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3},
	{"tbps", 8e12}, {"gbps", 8e9}, {"mbps", 8e6}, {"kbps", 8e3}, {"bps", 8}, {"bit", 1},
}

// ParseRate reads a rate as tc(8) writes one ("50mbit", "1gbit",
// "10mbps": megabytes), or a bare number of bits per second.
func ParseRate(s string) (uint64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := uint64(1)
	for _, u := range rateUnits {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = n, u.bits
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || !(f > 0) || f*float64(mult) >= math.MaxUint64/2 {
		return 0, fmt.Errorf("%q is not a rate (want e.g. \"50mbit\", \"1gbit\", \"800kbit\")", s)
	}
	return uint64(math.Round(f * float64(mult))), nil
}

// FormatRate renders bits per second in tc's largest exact unit.
func FormatRate(bits uint64) string {
	for _, u := range rateUnits {
		if !strings.HasSuffix(u.suffix, "bit") { // bits, not bytes
			continue
		}
		if bits >= u.bits && bits%u.bits == 0 {
			return fmt.Sprintf("%d%s", bits/u.bits, u.suffix)
		}
	}
	return fmt.Sprintf("%dbit", bits)
}

// qdisc is s on the link with index i, as the library has it.
func (s Shape) qdisc(index int) netlink.Qdisc {
	attrs := netlink.QdiscAttrs{LinkIndex: index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	if s.Qdisc() == "tbf" {
		rate := s.Rate / 8 // bytes per second
		burst := s.burst()
		limit := uint64(float64(rate)*s.latency().Seconds()) + uint64(burst)
		return &netlink.Tbf{QdiscAttrs: attrs, Rate: rate, Buffer: netlink.Xmittime(rate, burst), Limit: uint32(min(limit, math.MaxUint32))}
	}
	n := netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{
		Latency: uint32(s.Delay.Microseconds()), Jitter: uint32(s.Jitter.Microseconds()), Loss: float32(s.Loss),
	})
	n.Rate64 = s.Rate / 8
	return n
}

// SetShape makes s the link's root qdisc.
//
// Equivalent to: tc -n $ns qdisc replace dev $dev root handle 1: $s; or
// tc -n $ns qdisc del dev $dev root
func (k *Netlink) SetShape(ns, dev string, s Shape) error {
	return k.withLink(ns, dev, func(h *netlink.Handle, l netlink.Link) error {
		if s.IsZero() {
			err := h.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}, QdiscType: "tbf"})
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
				return nil // the kernel's default is there
			}
			return err
		}
		err := h.QdiscReplace(s.qdisc(l.Attrs().Index))
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("the kernel has no '%s' qdisc", s.Qdisc())
		}
		return err
	})
}

// qdiscs remembers what HasQdisc found, by kind.
var qdiscs sync.Map

// HasQdisc finds out whether the kernel has a qdisc kind by adding one to
// the loopback of a namespace of its own, made for that and gone with the
// thread that made it: nothing of the machine's or a lab's is touched.
func (k *Netlink) HasQdisc(kind string) (bool, error) {
	if v, ok := qdiscs.Load(kind); ok {
		return v.(bool), nil
	}
	var q netlink.Qdisc
	attrs := netlink.QdiscAttrs{LinkIndex: 1, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	switch kind {
	case "netem":
		q = netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{Latency: 1000})
	case "tbf":
		q = Shape{Rate: 1e6}.qdisc(1)
	default:
		return false, fmt.Errorf("no probe for the qdisc %q", kind)
	}
	type answer struct {
		has bool
		err error
	}
	done := make(chan answer, 1)
	go func() {
		// The thread is never unlocked: it leaves with its namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- answer{err: fmt.Errorf("a namespace to find the kernel's qdiscs in: %w", err)}
			return
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer h.Close()
		err = h.QdiscAdd(q)
		switch {
		case err == nil:
			done <- answer{has: true}
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
			done <- answer{has: false}
		default:
			done <- answer{err: fmt.Errorf("finding the kernel's %s qdisc: %w", kind, err)}
		}
	}()
	a := <-done
	if a.err == nil {
		qdiscs.Store(kind, a.has)
	}
	return a.has, a.err
}

// Shapes reads the root qdiscs nsrun makes (tbf, netem) of the links of ns.
//
// Equivalent to: tc -n $ns qdisc show
func (k *Netlink) Shapes(ns string) (map[string]Shape, error) {
	h, err := k.h(ns)
	if err != nil {
		return nil, err
	}
	names, _, err := k.names(ns)
	if err != nil {
		return nil, err
	}
	list, err := dump("qdiscs", ns, func() ([]netlink.Qdisc, error) { return h.QdiscList(nil) })
	if err != nil {
		return nil, err
	}
	out := map[string]Shape{}
	for _, q := range list {
		a := q.Attrs()
		if a.Parent != netlink.HANDLE_ROOT || names[a.LinkIndex] == "" {
			continue
		}
		switch q := q.(type) {
		case *netlink.Tbf:
			limitTime := time.Duration(0)
			if q.Rate > 0 {
				limitTime = time.Duration(float64(q.Limit) / float64(q.Rate) * float64(time.Second))
			}
			burst := netlink.Xmitsize(q.Rate, q.Buffer)
			lat := limitTime - time.Duration(float64(burst)/float64(max(q.Rate, 1))*float64(time.Second))
			out[names[a.LinkIndex]] = Shape{Rate: q.Rate * 8, Burst: burst, Latency: lat.Round(time.Millisecond)}
		case *netlink.Netem:
			out[names[a.LinkIndex]] = Shape{Delay: time.Duration(q.Latency) * time.Microsecond, Jitter: time.Duration(q.Jitter) * time.Microsecond, Loss: float64(q.Loss), Rate: q.Rate64 * 8}
		}
	}
	return out, nil
}

func (r *Recorder) SetShape(ns, dev string, s Shape) error {
	l, err := r.get(ns, dev)
	if err != nil {
		return err
	}
	if r.shapes == nil {
		r.shapes = map[[2]string]Shape{}
	}
	key := [2]string{ns, dev}
	if s.IsZero() {
		delete(r.shapes, key)
		return r.change("tc%s qdisc del dev %s root", tcN(ns), l.Name)
	}
	r.shapes[key] = s
	return r.change("tc%s qdisc replace dev %s root handle 1: %s", tcN(ns), l.Name, s)
}

// HasQdisc asks the real kernel, if the recorder may; where it cannot tell
// (no real kernel, or no right to make a namespace to look in), it says
// yes: the run finds out.
func (r *Recorder) HasQdisc(kind string) (bool, error) {
	if sh, ok := As[Shaper](r.Real); ok {
		if has, err := sh.HasQdisc(kind); err == nil {
			return has, nil
		}
	}
	return true, nil
}

func (r *Recorder) Shapes(ns string) (map[string]Shape, error) {
	if err := r.hasNS(ns); err != nil {
		return nil, err
	}
	out := map[string]Shape{}
	for key, s := range r.shapes {
		if key[0] == ns {
			out[key[1]] = s
		}
	}
	return out, nil
}

func tcN(ns string) string {
	if ns == Host {
		return ""
	}
	return " -n " + ns
}
