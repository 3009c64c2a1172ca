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
	b, err := os.ReadFile(path(pid, "stat"))
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
	b, err := os.ReadFile(path(pid, "environ"))
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
func Netns(pid int) uint64 {
	var st unix.Stat_t
	if unix.Stat(path(pid, "ns/net"), &st) != nil {
		return 0
	}
	return st.Ino
}

// MountNamespace returns the inode of the process's mount namespace, or
// 0 if it cannot be read (the process ended).
func MountNamespace(pid int) uint64 {
	var st unix.Stat_t
	if unix.Stat(path(pid, "ns/mnt"), &st) != nil {
		return 0
	}
	return st.Ino
}

// MountSources returns, for each filesystem type, the sources of the mounts
// in the process's mount namespace (from /proc/PID/mountinfo).
func MountSources(pid int, fstype string) []string {
	b, err := os.ReadFile(path(pid, "mountinfo"))
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
	b, err := os.ReadFile(path(pid, "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// Comm returns the process's command name.
func Comm(pid int) string {
	b, _ := os.ReadFile(path(pid, "comm"))
	return strings.TrimSpace(string(b))
}

func path(pid int, file string) string { return "/proc/" + strconv.Itoa(pid) + "/" + file }
