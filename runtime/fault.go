package runtime

// faultHook, set only in binaries built with the faultinject tag (see
// fault_inject.go), runs before (after = false) and after each change of a
// real run, numbered from 1. An error before a change makes it fail.
var faultHook func(n int, after bool) error
