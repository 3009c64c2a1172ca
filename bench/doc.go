// Package bench holds nsrun's benchmarks of its hot paths on the real
// kernel (run as root; each inside a sandbox of its own):
//
//	sudo go test -run - -bench . ./bench
//
// bench/run.sh compares whole runs with the alternatives.
package bench
