// Package sandbox runs nsrun inside a sandbox of its own (--sandbox): the
// program again, in a fresh network namespace and a private mount namespace
// where /run/netns, /run/nsrun and /sys are private, so that nothing it
// makes can meet the machine's names or outlive it. A kept sandbox's inside
// becomes a holder (hold.go): it keeps the sandbox's namespaces alive and
// runs nsrun commands in them for the user who made it, over a unix socket
// whose directory and peer are checked before anything is sent.
package sandbox
