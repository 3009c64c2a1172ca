package kernel

import "strings"

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
