// Package dhcp is nsrun's DHCPv4: a small deterministic server, run as a
// process of its own inside a namespace (the internal command
// "dhcp-server"), and a one-shot client that obtains a lease for a link.
// Both speak the protocol through github.com/insomniacslk/dhcp.
package dhcp
