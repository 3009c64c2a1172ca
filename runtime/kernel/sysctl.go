package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/runtime/nsexec"
)

// SysctlParts splits a key as sysctl(8) does: with a slash in it, slashes
// separate its parts (so a device name may hold dots:
// net/ipv4/conf/eth0.10/rp_filter); else dots do.
func SysctlParts(key string) []string {
	if strings.Contains(key, "/") {
		return strings.Split(key, "/")
	}
	return strings.Split(key, ".")
}

// SysctlDevice returns the device of a per-device key (net.ipv4.conf.DEV.x,
// net.ipv6.conf.DEV.x, net.ipv4.neigh.DEV.x), or "" for a key of the whole
// namespace. "all" and "default" are settings of the namespace, not devices.
func SysctlDevice(key string) string {
	parts := SysctlParts(key)
	if len(parts) >= 5 && parts[0] == "net" && (parts[1] == "ipv4" || parts[1] == "ipv6") && (parts[2] == "conf" || parts[2] == "neigh") {
		if dev := parts[3]; dev != "all" && dev != "default" {
			return dev
		}
	}
	return ""
}

// NetnsSysctl looks, for a key, at a scratch network namespace, made for
// the look and gone after it, once per key: a key the
// machine's namespace has and a new one lacks, or has read-only, is a
// setting of the whole machine. A device's key is looked at as lo's. What
// cannot be told (no privilege to make a namespace, a key no namespace has
// yet) is nil: the run finds it.
func (k *Netlink) NetnsSysctl(key string) error {
	k.mu.Lock()
	err, known := k.scopes[key]
	k.mu.Unlock()
	if known {
		return err
	}
	look := key
	if SysctlDevice(key) != "" {
		parts := SysctlParts(key)
		parts[3] = "lo"
		look = strings.Join(parts, "/")
	}
	path := sysctlPath(look)
	var here unix.Stat_t
	if unix.Stat(path, &here) != nil {
		return nil
	}
	err = lookInScratch(key, path)
	k.mu.Lock()
	k.scopes[key] = err
	k.mu.Unlock()
	return err
}

// lookInScratch stats path in a scratch network namespace (see
// nsexec.InScratch).
func lookInScratch(key, path string) error {
	var st unix.Stat_t
	var serr error
	if nsexec.InScratch(func() error { serr = unix.Stat(path, &st); return nil }) != nil {
		return nil // no privilege to make one: the run finds it
	}
	switch {
	case errors.Is(serr, unix.ENOENT):
		return fmt.Errorf("%s is a setting of the whole machine: a network namespace has none of its own: %w", key, fs.ErrPermission)
	case serr == nil && st.Mode&0o222 == 0:
		return fmt.Errorf("%s is read-only in a network namespace: %w", key, fs.ErrPermission)
	}
	return nil
}
