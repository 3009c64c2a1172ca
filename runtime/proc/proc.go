package proc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Pids lists the processes that exist, this one left out, in /proc's
// order (ascending).
func Pids() []int {
	entries, _ := os.ReadDir("/proc")
	pids := make([]int, 0, len(entries))
	self := os.Getpid()
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != self {
			pids = append(pids, pid)
		}
	}
	return pids
}

// A Stat is what nsrun reads of /proc/PID/stat.
type Stat struct {
	State byte   // 'R', 'S', 'Z', ... (see proc(5))
	Pgrp  int    // its process group
	Start uint64 // start time, in clock ticks since boot: with the pid, it names the process
}

// Zombie reports whether the process has ended and waits to be reaped.
func (s Stat) Zombie() bool { return s.State == 'Z' }

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := readProc(path(pid, "stat"))
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(b)
}

// ParseStat parses the content of a /proc/PID/stat file. The command name,
// in parentheses, may hold spaces and parentheses itself: the fields start
// after its last ')'.
func ParseStat(b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("stat: unexpected format")
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 20 || len(fields[0]) != 1 {
		return Stat{}, fmt.Errorf("stat: unexpected format")
	}
	start, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("stat: start time: %w", err)
	}
	pgrp, err := strconv.Atoi(string(fields[2]))
	if err != nil {
		return Stat{}, fmt.Errorf("stat: process group: %w", err)
	}
	return Stat{State: fields[0][0], Pgrp: pgrp, Start: start}, nil
}

// Live reports whether pid exists and is not a zombie.
func Live(pid int) bool {
	s, err := ReadStat(pid)
	return err == nil && !s.Zombie()
}

// Env returns the value of key in the process's environment (as it was
// when it last executed a program), and whether it is there.
func Env(pid int, key string) (string, bool) {
	b, err := readProc(path(pid, "environ"))
	if err != nil {
		return "", false
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(key+"=")); ok {
			return string(v), true
		}
	}
	return "", false
}

// Netns returns the inode of the process's network namespace, or 0.
func Netns(pid int) uint64 { return nsInode(pid, "net") }

// nsInode returns the inode of the process's namespace of a kind ("net",
// "mnt"), or 0 if it cannot be read (the process ended). It reads the
// link's name ("net:[4026531840]"), which costs half a stat of it: a
// stat opens the namespace's file.
func nsInode(pid int, kind string) uint64 {
	var buf [64]byte
	n, err := unix.Readlink(path(pid, "ns/"+kind), buf[:])
	if err != nil {
		return 0
	}
	name, ok := strings.CutPrefix(string(buf[:n]), kind+":[")
	if !ok || !strings.HasSuffix(name, "]") {
		return 0
	}
	ino, err := strconv.ParseUint(strings.TrimSuffix(name, "]"), 10, 64)
	if err != nil {
		return 0
	}
	return ino
}

// MountNamespace returns the inode of the process's mount namespace, or
// 0 if it cannot be read (the process ended).
func MountNamespace(pid int) uint64 { return nsInode(pid, "mnt") }

// MountSources returns, for each filesystem type, the sources of the mounts
// in the process's mount namespace (from /proc/PID/mountinfo).
func MountSources(pid int, fstype string) []string {
	b, err := readProc(path(pid, "mountinfo"))
	if err != nil {
		return nil
	}
	return parseMountSources(b, fstype)
}

// parseMountSources reads mountinfo lines: "ID PARENT MAJ:MIN ROOT POINT
// OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS".
func parseMountSources(b []byte, fstype string) []string {
	var sources []string
	for _, line := range strings.Split(string(b), "\n") {
		_, rest, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) >= 2 && f[0] == fstype {
			sources = append(sources, unescape(f[1]))
		}
	}
	return sources
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Cmdline returns the process's arguments; nil for a kernel thread or a
// process gone.
func Cmdline(pid int) []string {
	b, err := readProc(path(pid, "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// Comm returns the process's command name.
func Comm(pid int) string {
	b, _ := readProc(path(pid, "comm"))
	return strings.TrimSpace(string(b))
}

// readProc reads a file of /proc whole, in as few system calls as it can:
// most take one read and one more that finds the end (os.ReadFile also
// asks the size, which /proc does not know). A lab's processes are looked
// for by reading every process's files.
func readProc(name string) ([]byte, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	b := make([]byte, 0, 8192)
	for {
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: name, Err: err}
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

func path(pid int, file string) string { return "/proc/" + strconv.Itoa(pid) + "/" + file }
