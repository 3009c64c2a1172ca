package store

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A lab's record is sealed: lab.json carries an HMAC of the lab's name and
// instance id under a key that only this state directory's owner can read
// (STATE/.key, made with the directory). A record nsrun did not write — a
// planted lab directory, a copy of an old one — has no valid seal, and no
// nsrun command acts on it: recovery leaves it alone, `down` refuses it,
// and `gc` lists what carries its tag as orphans. (Every undo also checks
// that what it changes is the lab's, see owner: the seal keeps nsrun from
// even trying.)

const keyFile = ".key"

// stateKey returns the key of stateDir, made if it has none yet (create is
// true only with the state directory locked, see lockState).
func stateKey(stateDir string, create bool) ([]byte, error) {
	path := filepath.Join(stateDir, keyFile)
	k, err := readKey(path)
	if errors.Is(err, os.ErrNotExist) && create {
		if err = writeKey(path, newKey()); err == nil {
			k, err = readKey(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("the state directory's key: %w", err)
	}
	return k, nil
}

// dropKey removes the key of a state directory that has no lab left: no
// file of nsrun's outlives its labs. Call it with the state locked.
func dropKey(stateDir string) {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() != keyFile && !strings.HasPrefix(e.Name(), ".sandbox") {
			return
		}
	}
	os.Remove(filepath.Join(stateDir, keyFile))
}

func newKey() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

func writeKey(path string, k []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	_, err = unix.Write(fd, k)
	if err = errors.Join(err, unix.Close(fd)); err != nil {
		os.Remove(path)
	}
	return err
}

// readKey reads a key that is this user's alone: a regular file, not a
// link, owned by the user, readable by no one else.
func readKey(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 {
		return nil, fmt.Errorf("%s is not a private file of this user's (owner %d, mode %o)", path, st.Uid, st.Mode&0o7777)
	}
	k := make([]byte, 32)
	if n, err := unix.Read(fd, k); err != nil || n != len(k) {
		return nil, fmt.Errorf("%s: not a key", path)
	}
	return k, nil
}

// seal is the seal of lab name's instance id under key.
func seal(key []byte, name, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name + "\x00" + id))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// ErrUnsealed is the error of a lab record nsrun did not write.
var ErrUnsealed = errors.New("its record was not written by nsrun (no valid seal): nothing is done to it; `nsrun gc` lists the objects tagged as its")

// verify checks the record's seal.
func (l *Lab) verify() error {
	key, err := stateKey(filepath.Dir(l.Dir), false)
	if err == nil && l.Info.Seal != "" && l.Info.Name == filepath.Base(l.Dir) && hmac.Equal([]byte(l.Info.Seal), []byte(seal(key, l.Info.Name, l.Info.ID))) {
		return nil
	}
	return fmt.Errorf("lab %q: %w", filepath.Base(l.Dir), ErrUnsealed)
}
