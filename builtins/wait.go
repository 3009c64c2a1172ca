package builtins

import (
	"context"
	"fmt"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"go.starlark.net/starlark"
)

// wait_until(fn, timeout="10s", interval="100ms", what=None) calls fn, with
// no arguments, until it returns a true value, and returns that value. It
// waits interval between calls and starts no process to wait; after timeout
// the recipe fails at the wait_until line, saying what it waited for (what=,
// or fn's name) and how long. An error in fn fails the recipe at once. On a
// kernel that only records (planning), fn is called once: what it observes
// is made up, and the plan goes on.
func waitUntil(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fn starlark.Callable
	timeout, interval := duration(10*time.Second), duration(100*time.Millisecond)
	var what string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "fn", &fn, "timeout?", &timeout, "interval?", &interval, "what?", &what); err != nil {
		return nil, err
	}
	if what == "" {
		what = fn.Name()
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	_, planning := kernel.As[kernel.Planner](k)
	var agree func(bool) (bool, error)
	if a := rt.Across(); a != nil && !planning {
		// A lab across machines: fn's observations are shared, and so is
		// the decision to poll again, the coordinator's, so that every
		// part polls as often.
		agree = func(expired bool) (bool, error) {
			var mine []byte
			if a.Machine() == engine.Local {
				mine = []byte{'0'}
				if expired {
					mine[0] = '1'
				}
			}
			all, err := rt.Exchange(mine)
			if err != nil {
				return false, err
			}
			for _, d := range all {
				if len(d) > 0 {
					return d[0] == '1', nil
				}
			}
			return false, fmt.Errorf("%s: the coordinator did not say whether to wait on", b.Name())
		}
	}
	return waitFor(rt.Ctx, time.Duration(timeout), time.Duration(interval), planning, agree, func() (starlark.Value, error) {
		v, err := starlark.Call(thread, fn, nil, nil)
		if err != nil {
			return nil, err
		}
		if planning || bool(v.Truth()) {
			return v, nil
		}
		return nil, nil
	}, func(waited time.Duration) error {
		return fmt.Errorf("%s: not true after %s", what, waited.Round(time.Millisecond))
	})
}

// waitFor calls try every interval until it returns a value or an error,
// once only if once; it fails with timedOut(the time waited) after timeout,
// and stops if ctx is done. agree, if set, is asked whether the time is up
// (given what this clock says), and its answer goes.
func waitFor(ctx context.Context, timeout, interval time.Duration, once bool, agree func(expired bool) (bool, error), try func() (starlark.Value, error), timedOut func(time.Duration) error) (starlark.Value, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		v, err := try()
		if err != nil || v != nil {
			return v, err
		}
		if once {
			return starlark.None, nil
		}
		left := time.Until(deadline)
		expired := left <= 0
		if agree != nil {
			if expired, err = agree(expired); err != nil {
				return nil, err
			}
		}
		if expired {
			return nil, timedOut(time.Since(start))
		}
		wait := interval
		if left > 0 {
			wait = min(interval, left)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		}
	}
}
