package builtins

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// validSysctl checks a key names a network sysctl, and returns its parts.
func validSysctl(key string) ([]string, bool) {
	parts := kernel.SysctlParts(key)
	if len(parts) < 2 || parts[0] != "net" {
		return nil, false
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || !sysctlPart.MatchString(p) {
			return nil, false
		}
	}
	return parts, true
}

var sysctlPart = regexp.MustCompile(`^[A-Za-z0-9_@.-]+$`)

// ns.sysctl(key, value) sets a network sysctl of the namespace and returns
// the old value, which comes back on rollback and teardown. In host(), only
// the per-device keys of the lab's own links may be set: the machine's own
// settings are never changed.
//
// Equivalent to: ip netns exec $ns sysctl -w $key=$value
func netnsSysctl(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := b.Receiver().(*Netns)
	var key string
	var value starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "key", &key, "value", &value); err != nil {
		return nil, err
	}
	if _, ok := validSysctl(key); !ok {
		return nil, fmt.Errorf("%s: for parameter key: %q is not a network sysctl (want e.g. net.ipv4.ip_forward, or net/ipv4/conf/eth0.10/rp_filter for a name with dots)", b.Name(), key)
	}
	val, ok := starlark.AsString(value)
	if !ok {
		if _, isInt := value.(starlark.Int); !isInt {
			return nil, fmt.Errorf("%s: for parameter value: got %s, want string or int", b.Name(), value.Type())
		}
		val = value.String()
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if n.name == kernel.Host && rt.Prefix != "" { // the recipe names its host link as it wrote it
		if dev := kernel.SysctlDevice(key); dev != "" {
			if kdev := rt.HostLinkOf(dev); kdev != dev && rt.OwnsLink(kernel.Host, kdev) {
				sep := key[len("net")]
				key = strings.Replace(key, string(sep)+dev+string(sep), string(sep)+kdev+string(sep), 1)
			}
		}
	}
	if n.name == kernel.Host {
		if dev := kernel.SysctlDevice(key); dev == "" || !rt.OwnsLink(kernel.Host, dev) {
			return nil, fmt.Errorf("%s: %s is a setting of the machine; in host(), nsrun sets only the per-device keys of links this lab created", b.Name(), key)
		}
	} else if err := n.mutable(rt); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	old, err := k.SysctlGet(n.name, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: netns %q has no sysctl %s: a misspelt key, a device it lacks, or a setting of the whole machine (which a namespace has none of)", b.Name(), n.Name(), key)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s in netns %q: %w", b.Name(), key, n.Name(), err)
	}
	step := journal.Step{Op: journal.OpSysctl, NS: n.name, Name: key, Old: old, New: val}
	w := says("%s: setting %s=%s in netns %q", b.Name(), key, val, n.Name())
	if err := now(thread, rt, step, w, func(k kernel.Kernel, _ *journal.Step) error { return k.SysctlSet(n.name, key, val) }); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			// Root gets this too: the key is a setting of the whole machine,
			// which other namespaces may read but not write.
			return nil, fmt.Errorf("%s: %s is not a per-namespace setting: the kernel lets only the machine's own namespace change it, and nsrun never does", b.Name(), key)
		}
		return nil, err
	}
	return starlark.String(old), nil
}
