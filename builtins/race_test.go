package builtins_test

import (
	"testing"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// A probe right after building does not race the kernel: the run waits
// until the links it made carry packets (and, for IPv6, its addresses are
// no longer tentative) before the first ping. Each recipe builds and pings
// in a loop; not one ping may fail.
func TestFirstPacketAfterBuilding(t *testing.T) {
	for _, c := range []struct {
		recipe string
		times  string
	}{
		{"race_lan.star", "200"},
		{"race_router6.star", "100"},
	} {
		t.Run(c.recipe, func(t *testing.T) {
			nstest.Kernel(t)
			if testing.Short() && c.times == "100" {
				t.Skip("minutes of IPv6 duplicate address detection; -short skips it")
			}
			k := kernel.NewNetlink(nstest.NetnsDir)
			defer k.Close()
			out, rt, err := runArgs(t, k, c.recipe, readTestdata(t, c.recipe), c.times)
			defer rollback(t, rt)
			if err != nil {
				t.Fatal(engine.Backtrace(err))
			}
			if out != "failures: 0\n" {
				t.Errorf("%s, %s times: %s", c.recipe, c.times, out)
			}
		})
	}
}
