package builtins_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

// bridge(stp=True, forward_delay=) makes a bridge the kernel runs the
// spanning tree on, with that delay, as `ip -d link` shows; deleted and
// rolled back, it comes back with them; the plan says it.
func TestBridgeSTP(t *testing.T) {
	src := `
sw = netns("stp-sw")
br = bridge("br-stp", netns = sw, stp = True, forward_delay = "2.5s").up()
plain = bridge("br-plain", netns = sw)
`
	s := kernelSession(t)
	s.exec(src)
	check := func(name string, stp, delay int) {
		t.Helper()
		var links []struct {
			Linkinfo struct {
				InfoData struct {
					StpState     int `json:"stp_state"`
					ForwardDelay int `json:"forward_delay"`
				} `json:"info_data"`
			} `json:"linkinfo"`
		}
		if err := json.Unmarshal([]byte(nstest.Ip(t, "stp-sw", "-d", "-j", "link", "show", name)), &links); err != nil || len(links) != 1 {
			t.Fatalf("ip -d -j link show %s: %v", name, err)
		}
		d := links[0].Linkinfo.InfoData
		if d.StpState != stp || delay != 0 && d.ForwardDelay != delay {
			t.Errorf("%s: stp_state %d forward_delay %d, want %d and %d", name, d.StpState, d.ForwardDelay, stp, delay)
		}
	}
	check("br-stp", 1, 250)
	check("br-plain", 0, 0)
	mark := s.rt.Journal.Len()
	s.exec(`br.delete()`)
	if _, failed := s.rt.Rollback(mark); len(failed) > 0 {
		t.Fatalf("rollback: %v", failed)
	}
	check("br-stp", 1, 250) // made again as it was

	rec := kernel.NewRecorder()
	_, prt, err := runSrc(t, rec, "stp.star", src)
	if err != nil {
		t.Fatal(err)
	}
	if plan := strings.Join(rec.Log, "\n"); !strings.Contains(plan, "ip -n stp-sw link add br-stp address ") || !strings.Contains(plan, "type bridge stp_state 1 forward_delay 250") {
		t.Errorf("plan:\n%s", plan)
	}
	rollback(t, prt)

	for _, c := range []struct{ src, want string }{
		{`bridge("b0", forward_delay = "3s")`, "forward_delay= is the spanning tree's (stp=True)"},
		{`bridge("b0", stp = True, forward_delay = "1s")`, "1s is not a forward delay (2s to 30s"},
	} {
		_, rt, err := runSrc(t, kernel.NewRecorder(), "v.star", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.src, err, c.want)
		}
		rollback(t, rt)
	}
}
