// Package kernel is the narrow interface between nsrun's runtime and the
// Linux kernel: every change a recipe makes goes through a Kernel. Netlink is
// the real one; Recorder is a recording fake for validation, planning and
// rollback-order tests.
//
// Namespaces are named as in /run/netns; Host ("") is the namespace nsrun
// itself runs in (the sandbox's root under --sandbox).
package kernel
