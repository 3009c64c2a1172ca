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
	return waitFor(rt.Ctx, time.Duration(timeout), time.Duration(interval), planning, func() (starlark.Value, error) {
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
// and stops if ctx is done.
func waitFor(ctx context.Context, timeout, interval time.Duration, once bool, try func() (starlark.Value, error), timedOut func(time.Duration) error) (starlark.Value, error) {
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
		if left <= 0 {
			return nil, timedOut(time.Since(start))
		}
		t := time.NewTimer(min(interval, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		}
	}
}
