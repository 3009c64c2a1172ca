package builtins

import (
	"errors"

	"github.com/nsrun/nsrun/runtime/kernel"
)

// The kernel capabilities the builtins beyond links and routes act through,
// each found in k (or a kernel it wraps) or refused with one message.

func shaperOf(k kernel.Kernel) (kernel.Shaper, error) {
	if s, ok := kernel.As[kernel.Shaper](k); ok {
		return s, nil
	}
	return nil, errors.New("this kernel cannot shape links")
}

func rulerOf(k kernel.Kernel) (kernel.Ruler, error) {
	if r, ok := kernel.As[kernel.Ruler](k); ok {
		return r, nil
	}
	return nil, errors.New("this kernel has no routing policy")
}

func fdberOf(k kernel.Kernel) (kernel.FDBer, error) {
	if f, ok := kernel.As[kernel.FDBer](k); ok {
		return f, nil
	}
	return nil, errors.New("this kernel has no forwarding databases")
}
