package runtime

// A faultPoint is where, in one change, the fault harness may strike.
type faultPoint int

const (
	beforeChange faultPoint = iota // before the kernel is asked
	changeMade                     // the kernel has answered; the done record is not written
	afterChange                    // the done record is written (or queued, see Journal)
)

// faultHook, set only in binaries built with the faultinject tag (see
// fault_inject.go), runs at each point of each change of a real run,
// numbered from 1. An error before a change makes it fail.
var faultHook func(n int, at faultPoint) error
