package bench

import (
	"context"
	"io"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/nsrun/nsrun/builtins"
	"github.com/nsrun/nsrun/recipes"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/store"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// up runs star.star with n hosts as lab "star" and fails b if it fails.
func up(b *testing.B, k kernel.Kernel, n int) {
	b.Helper()
	args := []string{strconv.Itoa(n)}
	r := engine.Run(context.Background(), engine.RunOptions{
		Recipe: "star.star", Args: args, StateDir: nstest.StateDir, Kernel: k,
		Interp: &engine.Interp{Predeclared: builtins.Predeclared(args), Std: recipes.Std},
		Stdout: io.Discard, Stderr: io.Discard, Quiet: true,
	})
	if r.Err != nil || len(r.Failed) > 0 {
		b.Fatalf("run: %v; not undone: %v", r.Err, r.Failed)
	}
}

// collectAsTheCommand has the garbage collector run, until b ends, as
// nsrun's command has it run (see collectLess in cmd/nsrun): a benchmark of
// an apply or a plan is mostly the memory it allocates.
func collectAsTheCommand(b *testing.B) {
	gc, limit := debug.SetGCPercent(200), debug.SetMemoryLimit(64<<20)
	b.Cleanup(func() { debug.SetGCPercent(gc); debug.SetMemoryLimit(limit) })
}

func down(b *testing.B, k kernel.Kernel) {
	b.Helper()
	lab, err := store.Open(nstest.StateDir, "star")
	if err == nil {
		err = lab.TryLock()
	}
	if err != nil {
		b.Fatal(err)
	}
	defer lab.Unlock()
	if r := lab.Down(k); len(r.Failed) > 0 {
		b.Fatal(r.Failed)
	}
}

// BenchmarkHost builds one host of the star (a namespace, a veth pair
// created in place, two addresses, both ends up, a bridge port) per
// iteration: a run of star.star with b.N hosts, preflight and journal
// included.
func BenchmarkHost(b *testing.B) {
	nstest.Kernel(b)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	b.ResetTimer()
	up(b, k, b.N)
	b.StopTimer()
	down(b, k)
}

// BenchmarkTeardown removes one host of the star per iteration: `nsrun
// down` of a lab of b.N hosts.
func BenchmarkTeardown(b *testing.B) {
	nstest.Kernel(b)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	up(b, k, b.N)
	b.ResetTimer()
	down(b, k)
}

// BenchmarkApplyOneHost applies a one-host change to a lab of 1,000 hosts
// (IPv6 off): each iteration adds a host with `nsrun apply`, and removes it
// with another, and reports the time of one apply. Compare with
// BenchmarkHost: an apply makes only what changed, but plans and replays
// the whole recipe (with no kernel call for what the lab has).
func BenchmarkApplyOneHost(b *testing.B) {
	nstest.Kernel(b)
	collectAsTheCommand(b)
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	const n = 1000
	apply := func(hosts int) {
		b.Helper()
		args := []string{strconv.Itoa(hosts), "v4"}
		r := engine.Apply(context.Background(), engine.ApplyOptions{
			RunOptions: engine.RunOptions{
				Recipe: "star.star", Args: args, StateDir: nstest.StateDir, Kernel: k,
				Interp: &engine.Interp{Predeclared: builtins.Predeclared(args), Std: recipes.Std},
				Stdout: io.Discard, Stderr: io.Discard, Quiet: true,
			},
			Removals: builtins.Removals,
		})
		if r.Err != nil || len(r.Failed) > 0 {
			b.Fatalf("apply of %d hosts: %v; not undone: %v", hosts, r.Err, r.Failed)
		}
	}
	apply(n) // not up: a run
	b.ResetTimer()
	for range b.N {
		apply(n + 1)
		apply(n)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N)/1e6, "ms/apply")
	down(b, k)
}

// BenchmarkPlan plans star.star with 1,000 hosts (IPv6 off) per iteration:
// the recipe's run on a recording kernel, as `nsrun plan` and an apply
// make it, with no kernel call. Compare with BenchmarkApplyOneHost.
func BenchmarkPlan(b *testing.B) {
	collectAsTheCommand(b)
	args := []string{"1000", "v4"}
	for b.Loop() {
		_, _, err := engine.Plan(context.Background(), engine.RunOptions{
			Recipe: "star.star", Args: args,
			Interp: &engine.Interp{Predeclared: builtins.Predeclared(args), Std: recipes.Std},
			Stdout: io.Discard, Stderr: io.Discard, Quiet: true,
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
