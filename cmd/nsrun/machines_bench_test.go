package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
	"github.com/nsrun/nsrun/runtime/nstest/cluster"
)

// splitRecipe is a lab of two LANs of HOSTS hosts each, joined by a
// router: with ON1 and ON2 set, each LAN is on a machine of its own.
const splitRecipe = `
load("@std//lan.star", "lan")
MACHINES
core = netns("core", ipv6 = False)
core.sysctl("net.ipv4.ip_forward", "1")
for s, on in [(1, ON1), (2, ON2)]:
    sw = netns("sw%d" % s, ipv6 = False, on = on)
    hosts = {netns("s%d-h%d" % (s, i), ipv6 = False, on = on): "10.%d.%d.%d/16" % (s, (i + 2) // 256, (i + 2) % 256) for i in range(HOSTS)}
    seg = lan("seg%d" % s, hosts, netns = sw, ipv6 = False)
    up, down = veth("up%d" % s, "down%d" % s, netns = core, peer_netns = sw)
    down.master(seg.bridge).up()
    up.addr("10.%d.255.254/16" % s)
    up.up()
`

func benchAcross(b *testing.B, hosts int, split bool) {
	nstest.Kernel(b)
	c := cluster.Start(b, cluster.Options{Machines: 2, Nsrun: nsrunBin})
	src := strings.ReplaceAll(splitRecipe, "HOSTS", fmt.Sprint(hosts))
	if split {
		src = strings.NewReplacer("MACHINES", fmt.Sprintf(`m1 = machine("m1", ssh = "m1", ssh_config = %q)
m2 = machine("m2", ssh = "m2", ssh_config = %q)`, c.SSHConfig, c.SSHConfig), "ON1", "m1", "ON2", "m2").Replace(src)
	} else {
		src = strings.NewReplacer("MACHINES", "", "ON1", "None", "ON2", "None").Replace(src)
	}
	recipe := write(b, "split.star", src)
	b.ResetTimer()
	for range b.N {
		code, out, errs := nstest.Run(b, c.Coordinator.Command("/usr/local/bin/nsrun", "run", "-q", "--rm", recipe))
		if code != 0 {
			b.Fatalf("run: %d\n%s%s", code, out, errs)
		}
	}
}

// BenchmarkAcross1000 builds and removes a 1,000-host lab on one machine,
// and split over two simulated machines (each LAN on its own).
func BenchmarkAcross1000(b *testing.B) {
	b.Run("one", func(b *testing.B) { benchAcross(b, 500, false) })
	b.Run("two", func(b *testing.B) { benchAcross(b, 500, true) })
}

// BenchmarkMachineFixedCost is what one machine costs a run: its SSH
// connection, its checks, the recipe run there too, its teardown — a lab
// of one namespace on it.
func BenchmarkMachineFixedCost(b *testing.B) {
	b.Run("local", func(b *testing.B) { benchAcross(b, 1, false) })
	b.Run("machine", func(b *testing.B) { benchAcross(b, 1, true) })
}
