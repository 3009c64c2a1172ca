package store

import (
	"fmt"
	"path/filepath"

	"github.com/nsrun/nsrun/runtime/nsexec"
	"golang.org/x/sys/unix"
)

// ProcessTagEnv marks, in their environment, every process a lab starts
// (and what those start, unless they clear their environment): teardown and
// recovery find a lab's processes by it, double-forked daemons included.
const ProcessTagEnv = nsexec.LabEnv

// ProcessTag is LAB/ID@STATE: the lab, its instance, and the identity of
// the state directory that records it. A sandbox has a /run/nsrun of its
// own: its labs' processes are not those of the machine's labs of the same
// name, and gc, down and recover never take one for the other.
func ProcessTag(lab, id, stateDir string) string {
	return lab + "/" + id + "@" + stateID(stateDir)
}

// stateID identifies a state directory by device and inode ("" for none).
func stateID(stateDir string) string {
	var st unix.Stat_t
	if stateDir == "" || unix.Stat(stateDir, &st) != nil {
		return ""
	}
	return fmt.Sprintf("%x.%x", st.Dev, st.Ino)
}

// ProcessTag is the value of ProcessTagEnv the lab's processes carry.
func (l *Lab) ProcessTag() string { return ProcessTag(l.Info.Name, l.Info.ID, filepath.Dir(l.Dir)) }
