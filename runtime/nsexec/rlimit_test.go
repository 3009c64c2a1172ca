package nsexec

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// With CAP_SYS_RESOURCE, nsrun's descriptor limit goes up to fs.nr_open;
// without it, it stays as it was.
func TestRaiseNofile(t *testing.T) {
	var was unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &was)
	defer os.Unsetenv(nofileEnv)
	RaiseNofile()
	var now unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("/proc/sys/fs/nr_open")
	nrOpen := strings.TrimSpace(string(b))
	switch {
	case now == was:
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: was.Max + 1, Max: was.Max + 1}); err == nil {
			t.Errorf("the limit could be raised, and RaiseNofile left it at %+v", now)
		}
		if _, set := os.LookupEnv(nofileEnv); set {
			t.Errorf("%s set with nothing raised", nofileEnv)
		}
	case now.Cur != now.Max || strconv.FormatUint(now.Max, 10) != nrOpen:
		t.Errorf("after RaiseNofile: %+v, want both fs.nr_open (%s)", now, nrOpen)
	}
}

// A command nsrun runs gets the descriptor limit nsrun was started with,
// not the one it raised its own to.
func TestCommandGetsTheLimitBack(t *testing.T) {
	var was unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	if was.Max < 1000 {
		t.Skip("a hard limit under 1000")
	}
	t.Setenv(nofileEnv, "500:800")
	out, err := Command("", []string{"sh", "-c", "ulimit -n; ulimit -Hn"}).Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if string(out) != "500\n800\n" {
		t.Errorf("a command's limits: %q, want nsrun's first ones (500, 800)", out)
	}
}
