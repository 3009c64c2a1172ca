// Package cluster simulates, on one host, several machines joined by a
// network, for tests of labs that span machines over SSH. Each machine is a
// process tree in namespaces of its own — network, mount, PID and UTS — with
// a private /run, /proc, /sys and /var/log, and the host's files elsewhere.
// An underlay namespace joins the machines with a bridge; every machine but
// the coordinator runs sshd, which the coordinator reaches with the ssh
// configuration the cluster writes:
//
//	c := cluster.Start(t, cluster.Options{Machines: 2, Nsrun: bin})
//	cmd := c.Coordinator.Command("ssh", "-F", c.SSHConfig, "m1", "nsrun", "ls")
//
// Nothing of a cluster outlives it: Close (registered with t.Cleanup) ends
// every machine, and with it every process in it, and removes the cluster's
// directory; so does the end of the test's process.
package cluster
