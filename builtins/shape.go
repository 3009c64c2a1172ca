package builtins

import (
	"fmt"
	"math"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/undo"
)

// A shaping is undone by putting back what the link had (see
// journal.OpShape), in any journal replayed.
func init() {
	undo.RegisterTagged(journal.OpShape, func(k kernel.Kernel, s journal.Step) error {
		old, err := kernel.ParseShape(s.Old)
		if err != nil {
			return err
		}
		sh, err := shaperOf(k)
		if err != nil {
			return err
		}
		return ignoreGoneLink(sh.SetShape(s.NS, s.Name, old))
	})
}

// link.shape(rate=None, burst=None, latency=None, delay=None, jitter=None,
// loss=None) shapes what the link sends, in place of its shaping so far: a
// token bucket (TBF) for rate ("50mbit", "1gbit", or bits per second),
// burst (bytes the bucket holds: 64000, "64kb"; by default what rate sends
// in 10 ms) and latency (the longest a packet queues, "50ms" by default);
// netem for delay, jitter (durations) and loss (a percentage), where the
// kernel has it, else the recipe fails before any change. shape() with no
// arguments removes the shaping. The rollback puts back what was there.
//
// Equivalent to: tc -n $ns qdisc replace dev $link root handle 1: tbf rate $rate burst $burst latency $latency
// (or netem delay $delay $jitter loss $loss% rate $rate; tc qdisc del dev $link root for none)
func linkShape(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var rate, burst, loss starlark.Value = starlark.None, starlark.None, starlark.None
	var latency, delay, jitter shapeTime
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "rate?", &rate, "burst?", &burst, "latency?", &latency,
		"delay?", &delay, "jitter?", &jitter, "loss?", &loss); err != nil {
		return nil, err
	}
	s := kernel.Shape{Latency: time.Duration(latency), Delay: time.Duration(delay), Jitter: time.Duration(jitter)}
	var err error
	if s.Rate, err = shapeRate(rate); err != nil {
		return nil, fmt.Errorf("%s: for parameter rate: %w", b.Name(), err)
	}
	if s.Burst, err = shapeBurst(burst); err != nil {
		return nil, fmt.Errorf("%s: for parameter burst: %w", b.Name(), err)
	}
	if s.Loss, err = shapeLoss(loss); err != nil {
		return nil, fmt.Errorf("%s: for parameter loss: %w", b.Name(), err)
	}
	switch {
	case s.Rate == 0 && (s.Burst > 0 || s.Latency > 0):
		return nil, fmt.Errorf("%s: burst= and latency= are a rate's: give rate=", b.Name())
	case s.Jitter > 0 && s.Delay == 0:
		return nil, fmt.Errorf("%s: jitter= varies a delay: give delay=", b.Name())
	}
	l, rt, err := linkMethod(thread, b)
	if err != nil {
		return nil, err
	}
	k, err := rt.Acting()
	if err != nil {
		return nil, err
	}
	shaper, err := shaperOf(k)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if q := s.Qdisc(); q != "" {
		has, err := shaper.HasQdisc(q)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		if !has {
			why := ""
			if q == "netem" {
				why = " (delay=, jitter= and loss= need it; rate= alone does not)"
			}
			return nil, fmt.Errorf("%s: the kernel has no '%s' qdisc%s", b.Name(), q, why)
		}
	}
	step := journal.Step{Op: journal.OpShape, NS: l.ns(), Name: l.state.name, Old: shapeOf(rt, l.ns(), l.state.name), New: s.String()}
	w := says("%s: shaping %q in netns %q", b.Name(), l.state.name, l.state.ns.Name())
	if s.IsZero() {
		w = says("%s: removing the shaping of %q in netns %q", b.Name(), l.state.name, l.state.ns.Name())
	}
	if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error {
		sh, err := shaperOf(k)
		if err != nil {
			return err
		}
		return sh.SetShape(l.ns(), l.state.name, s)
	}); err != nil {
		return nil, err
	}
	return l, nil
}

// shapeOf is the lab's shaping of the link at ns, name now ("" none): its
// last shape() since the link was made or came there. It reads the lab's
// whole journal: in an apply, a shaping the recipe no longer makes is the
// lab's all the same until it is changed.
func shapeOf(rt *engine.Runtime, ns, name string) string {
	shape := ""
	for _, s := range rt.Journal.Steps() {
		switch {
		case s.Op == journal.OpNetns && s.Name == ns:
			shape = ""
		case s.NS != ns || s.Name != name:
		case s.Op == journal.OpLink || s.Op == journal.OpLinkDel || s.Op == journal.OpMove:
			shape = ""
		case s.Op == journal.OpShape:
			shape = s.New
		}
	}
	return shape
}

// fdbEntries are the lab's forwarding entries on the link at ns, name now,
// by its whole journal (see shapeOf).
func fdbEntries(rt *engine.Runtime, ns, name string) []string {
	var entries []string
	for _, s := range rt.Journal.Steps() {
		switch {
		case s.Op == journal.OpNetns && s.Name == ns:
			entries = nil
		case s.NS != ns || s.Name != name:
		case s.Op == journal.OpLink || s.Op == journal.OpLinkDel || s.Op == journal.OpMove:
			entries = nil
		case s.Op == journal.OpFDB:
			entries = append(entries, s.New)
		case s.Op == journal.OpFDBDel:
			for i, e := range entries {
				if e == s.New {
					entries = append(entries[:i], entries[i+1:]...)
					break
				}
			}
		}
	}
	return entries
}

// shapeRate reads a rate: tc's notation, or bits per second.
func shapeRate(v starlark.Value) (uint64, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return 0, nil
	case starlark.String:
		return kernel.ParseRate(string(v))
	case starlark.Int:
		n, ok := v.Uint64()
		if !ok || n == 0 {
			return 0, fmt.Errorf("%s is not a rate: give bits per second, from 1 (to remove a shaping, call shape() with no arguments)", v)
		}
		return n, nil
	}
	return 0, fmt.Errorf("got %s, want a rate (\"50mbit\") or bits per second", v.Type())
}

// shapeBurst reads a size in bytes: a number, or with tc's units (b, kb
// or k, mb or m: powers of 1024).
func shapeBurst(v starlark.Value) (uint32, error) {
	var n float64
	switch v := v.(type) {
	case starlark.NoneType:
		return 0, nil
	case starlark.Int:
		i, ok := v.Int64()
		if !ok {
			return 0, fmt.Errorf("%s is too large", v)
		}
		n = float64(i)
	case starlark.String:
		t := strings.ToLower(string(v))
		mult := 1.0
		for _, u := range []struct {
			suffix string
			mult   float64
		}{{"kb", 1 << 10}, {"k", 1 << 10}, {"mb", 1 << 20}, {"m", 1 << 20}, {"b", 1}} {
			if rest, ok := strings.CutSuffix(t, u.suffix); ok {
				t, mult = rest, u.mult
				break
			}
		}
		if _, err := fmt.Sscanf(t, "%g", &n); err != nil || strings.ContainsAny(t, " \t") {
			return 0, fmt.Errorf("%q is not a size (want e.g. 64000, \"64kb\")", string(v))
		}
		n *= mult
	default:
		return 0, fmt.Errorf("got %s, want bytes or a size (\"64kb\")", v.Type())
	}
	if !(n >= 1) || n > math.MaxUint32 {
		return 0, fmt.Errorf("%v is not a size from 1 byte to 4 GiB", v)
	}
	return uint32(n), nil
}

// shapeLoss reads a percentage: 1, 0.5, "1%".
func shapeLoss(v starlark.Value) (float64, error) {
	var f float64
	switch v := v.(type) {
	case starlark.NoneType:
		return 0, nil
	case starlark.Int, starlark.Float:
		f, _ = starlark.AsFloat(v)
	case starlark.String:
		if _, err := fmt.Sscanf(strings.TrimSuffix(string(v), "%"), "%g", &f); err != nil {
			return 0, fmt.Errorf("%q is not a percentage (want e.g. 1, 0.5, \"2%%\")", string(v))
		}
	default:
		return 0, fmt.Errorf("got %s, want a percentage", v.Type())
	}
	if !(f > 0 && f <= 100) {
		return 0, fmt.Errorf("%v is not a percentage above 0, to 100", v)
	}
	return f, nil
}

// shapeTime is a shaping's duration: "10ms", "1.5ms", or seconds.
type shapeTime time.Duration

func (d *shapeTime) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.NoneType:
		return nil
	case starlark.String:
		t, err := time.ParseDuration(string(v))
		if err != nil || t < time.Microsecond || t > time.Hour {
			return fmt.Errorf("%q is not a duration from 1us to 1h (want e.g. \"10ms\")", string(v))
		}
		*d = shapeTime(t)
		return nil
	case starlark.Int, starlark.Float:
		f, _ := starlark.AsFloat(v)
		if !(f >= 1e-6 && f <= 3600) {
			return fmt.Errorf("%v is not a number of seconds from 0.000001 to 3600", v)
		}
		*d = shapeTime(time.Duration(f * float64(time.Second)))
		return nil
	}
	return fmt.Errorf("got %s, want a duration (\"10ms\") or seconds", v.Type())
}
