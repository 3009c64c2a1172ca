package builtins

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"go.starlark.net/starlark"
)

// readiness is spawn_in's ready=: how to know a background process is
// ready (see spawnIn).
type readiness struct {
	kind string // "unix", "file", "tcp", "udp", "log", "call"; "": none
	path string
	port int
	re   *regexp.Regexp
	fn   starlark.Callable
	desc string // as the recipe gave it
}

var readyKinds = `"unix:PATH", "file:PATH", "tcp:PORT", "udp:PORT", "log:REGEX" or a callable`

func (r *readiness) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.NoneType:
		return nil
	case starlark.Callable:
		r.kind, r.fn, r.desc = "call", v, v.Name()+"()"
		return nil
	case starlark.String:
		kind, arg, _ := strings.Cut(string(v), ":")
		r.kind, r.desc = kind, string(v)
		switch kind {
		case "unix", "file":
			if err := checkNodePath(arg); err != nil {
				return fmt.Errorf("%s: %w", v, err)
			}
			r.path = arg
		case "tcp", "udp":
			port, err := strconv.Atoi(arg)
			if err != nil || port < 1 || port > 65535 {
				return fmt.Errorf("%s: %q is not a port (1 to 65535)", v, arg)
			}
			r.port = port
		case "log":
			re, err := regexp.Compile(arg)
			if err != nil {
				return fmt.Errorf("%s: %w", v, err)
			}
			r.re = re
		default:
			return fmt.Errorf("%s: want %s", v, readyKinds)
		}
		return nil
	}
	return fmt.Errorf("got %s, want %s", v.Type(), readyKinds)
}

// readyPoll is how often readiness is checked.
const readyPoll = 20 * time.Millisecond

// wait returns once the process is ready, or fails: the process exited
// with an error first, or timeout passed. A process that exits with status
// 0 may have put itself in the background: the check goes on.
func (r *readiness) wait(thread *starlark.Thread, rt *engine.Runtime, ns *Netns, sp *engine.Spawned, timeout time.Duration) error {
	k, err := rt.Acting() // in an apply's past too: the process is a real one

	if err != nil {
		return err
	}
	node, _ := rt.Node(ns.name)
	exited := sp.Exited
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, err := r.check(thread, k, ns.name, node, sp)
		if err != nil {
			return fmt.Errorf("checking whether it is ready (%s): %w", r.desc, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready (%s) after %s%s", r.desc, timeout, logTail(sp.Log))
		}
		t := time.NewTimer(readyPoll)
		select {
		case <-t.C:
		case err := <-exited:
			t.Stop()
			exited = nil // it ended: from now on only the check
			code, werr := nsexec.ExitCode(err)
			if werr != nil || code != 0 {
				return fmt.Errorf("exited with status %d before it was ready (%s)%s", code, r.desc, logTail(sp.Log))
			}
		case <-rt.Ctx.Done():
			t.Stop()
			return rt.Ctx.Err()
		}
	}
}

// check reports whether the process is ready now.
func (r *readiness) check(thread *starlark.Thread, k kernel.Kernel, ns string, node nsexec.Node, sp *engine.Spawned) (bool, error) {
	switch r.kind {
	case "call":
		v, err := starlark.Call(thread, r.fn, nil, nil)
		return err == nil && bool(v.Truth()), err
	case "log":
		data, _ := os.ReadFile(sp.Log)
		for _, line := range bytes.Split(data, []byte("\n")) {
			if r.re.Match(line) {
				return true, nil
			}
		}
		return false, nil
	case "file":
		_, err := os.Stat(seen(node, sp.Pid, r.path))
		return err == nil, nil
	case "unix":
		return dialUnix(seen(node, sp.Pid, r.path)), nil
	case "tcp", "udp":
		p, ok := kernel.As[kernel.Pather](k)
		if !ok {
			return true, nil
		}
		return listening(p.Path(ns), r.kind, r.port)
	}
	return false, fmt.Errorf("no readiness %q", r.kind)
}

// seen returns where nsrun finds what the node shows at path: through the
// process's own view while it lives (its mount namespace, with whatever it
// mounted), else through the node's files.
func seen(node nsexec.Node, pid int, path string) string {
	root := fmt.Sprintf("/proc/%d/root", pid)
	if _, err := os.Stat(root + "/"); err == nil {
		return root + path
	}
	if node != "" {
		return node.Resolve(path)
	}
	return path
}

// dialUnix reports whether a unix socket at path accepts a connection. A
// path too long for a socket address is reached through its directory.
func dialUnix(path string) bool {
	if len(path) > 100 {
		dir, err := os.Open(filepath.Dir(path))
		if err != nil {
			return false
		}
		defer dir.Close()
		path = fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	}
	c, err := net.DialTimeout("unix", path, 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// listening reports whether a TCP socket listens, or a UDP socket is bound,
// on port in the namespace at nsPath (from /proc/net, as ss reads it).
func listening(nsPath, proto string, port int) (bool, error) {
	found := false
	err := nsexec.Do(nsPath, func() error {
		for _, f := range []string{proto, proto + "6"} {
			data, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				continue // no IPv6
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Scan() // the header
			for sc.Scan() {
				fields := strings.Fields(sc.Text())
				if len(fields) < 4 {
					continue
				}
				_, hexPort, _ := strings.Cut(fields[1], ":")
				p, err := strconv.ParseUint(hexPort, 16, 16)
				if err != nil || int(p) != port {
					continue
				}
				if proto == "udp" || fields[3] == "0A" { // TCP_LISTEN
					found = true
					return nil
				}
			}
		}
		return nil
	})
	return found, err
}

// logTail is the end of a log, for an error: its last 20 lines.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return " (its log is empty)"
	}
	return "; the end of its log (`nsrun logs`):\n" + lastLines(strings.TrimRight(string(data), "\n"), 20)
}
