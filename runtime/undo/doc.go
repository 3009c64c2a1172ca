// Package undo reverses a lab's journaled steps: newest first, processes
// before the namespaces they hold, as few kernel requests as the kernel
// allows (a namespace's deletion covers what lives in it; one request
// deletes a group of host links). Before every undo it checks that what it
// changes is still the lab's (owner.go): an object someone else put in a
// step's place is left alone and named in the Result.
//
// Other packages journal operations of their own (nftables NAT) and
// Register their undo here.
package undo
