// Package probe observes the network from inside namespaces natively, with
// no external tool: ICMP echo (Ping, like ping(8)) and packet counting and
// capture on a link (Capture, like tcpdump -w). Sockets are opened inside
// the namespace through nsexec.Do and keep it; everything after that runs on
// any thread.
package probe
