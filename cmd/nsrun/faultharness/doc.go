// Package faultharness holds the fault-injection harness of the nsrun
// command (TestFaultInjection): it fails, interrupts or kills runs of
// nsrun built with the faultinject tag at every change of every recipe,
// and requires the machine to be as it was. It is a package of its own so
// that it runs beside cmd/nsrun's other tests, each within go test's
// default time limit.
package faultharness
