package nsexec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/nsrun/nsrun/runtime/fault"
	"golang.org/x/sys/unix"
)

// Do runs fn on a fresh OS thread that has entered the network namespace at
// path; an empty path means the namespace the process started in.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer unix.Close(target)
	return onThread(func() error {
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("entering netns %s: %w", path, err)
		}
		return nil
	}, fn)
}

// onThread runs enter, which moves the thread to another network namespace,
// then fn, on a fresh locked OS thread, and moves the thread back. Shaped
// like the CNI plugins' ns.Do: the thread is unlocked, and so returned to
// Go's pool, only if it provably got back to its original namespace;
// otherwise it dies with its goroutine.
func onThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := home()
		if err != nil {
			errc <- fmt.Errorf("opening current netns: %w", err)
			return // the thread stays locked and dies: harmless
		}
		if err := enter(); err != nil {
			runtime.UnlockOSThread() // it did not move
			errc <- err
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("returning to the original netns: %w", err))
			return // still locked: the thread is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// home returns a descriptor of the network namespace the process's threads
// are in, opened once. A thread Go hands out is always in it: onThread
// returns a thread to Go only once it is back there, and Go makes new
// threads from one that never leaves it.
func home() (int, error) {
	homeMu.Lock()
	defer homeMu.Unlock()
	if homeFd < 0 {
		fd, err := unix.Open(threadNetns(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err // tried again next time (out of descriptors?)
		}
		homeFd = fd
	}
	return homeFd, nil
}

var (
	homeMu sync.Mutex
	homeFd = -1
)

func threadNetns() string {
	return fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
}

// InScratch runs fn on a thread in a new network namespace of its own,
// which nothing else sees and which is gone once fn returns (the thread goes
// back where it was, as Do's does).
func InScratch(fn func() error) error {
	return onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		return nil
	}, fn)
}

// NewNamed creates a network namespace, runs inside on its thread (if not
// nil) before anyone else can see it, then pins it at dir/name, as
// `ip netns add` does, and returns its inode, which identifies it for as long
// as it lives, the inode of the pin file under the mount (see pin), and a
// descriptor of it (close-on-exec), for the caller to keep or close. The
// calling thread never changes namespace.
func NewNamed(dir, name string, inside func() error) (ino, pinIno uint64, fd int, err error) {
	fd = -1
	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		return nil
	}, func() (err error) {
		if fd, err = unix.Open(threadNetns(), unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil || inside == nil {
			return err
		}
		return inside()
	})
	if err == nil {
		ino, pinIno, err = pin(fd, dir, name)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd) // the namespace vanishes with its last descriptor
		}
		return 0, 0, -1, fmt.Errorf("binding %s: %w", filepath.Join(dir, name), err)
	}
	return ino, pinIno, fd, nil
}

// pin binds the namespace open at fd to dir/name, as `ip netns add` does
// (first an empty file, then the bind mount), and returns its inode and the
// pin file's own: once the namespace is unmounted from it, that file is
// what is left, and its inode tells it from a file someone else made.
func pin(fd int, dir, name string) (ino, pinIno uint64, err error) {
	if err := prepareNetnsDir(dir); err != nil {
		return 0, 0, err
	}
	path := filepath.Join(dir, name)
	f, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return 0, 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	err = unix.Fstat(f, &st)
	unix.Close(f)
	if err != nil {
		os.Remove(path)
		return 0, 0, err
	}
	pinIno = st.Ino
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return 0, 0, err
	}
	// The pin's inode is the namespace's: the one of the descriptor.
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, err
	}
	return st.Ino, pinIno, nil
}

// Inode returns the inode of the namespace pinned at path.
func Inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// MountID returns the unique id of the mount at path (the pin of a named
// namespace): unlike an inode number, the kernel never hands it out again,
// so a pin with the id recorded at its making is that very pin. 0 if the
// kernel has no such ids (before Linux 6.8).
func MountID(path string) uint64 {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID_UNIQUE, &st); err != nil || st.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return 0
	}
	return st.Mnt_id
}

// DeleteNamed unpins the namespace at dir/name, as `ip netns del` does, but
// only if it is still the namespace with inode ino: a namespace someone else
// pinned under the same name is left alone. A namespace already gone is not
// an error. The kernel frees it once nothing else holds it.
func DeleteNamed(dir, name string, ino uint64) error {
	path := filepath.Join(dir, name)
	got, err := Inode(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if got != ino {
		return fmt.Errorf("%s is not the namespace this lab created (inode %d, want %d); left alone", path, got, ino)
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	fault.At(fault.Unpin, int(unpins.Add(1)))
	return RemovePin(path)
}

// unpins counts the namespaces unmounted, for the fault injector.
var unpins atomic.Int64

// RemovePin removes the pin file at path (a namespace already unmounted
// from it).
func RemovePin(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// PinFile returns the inode of the file at path if it is a pin no
// namespace is bound to — an empty regular file, as a pin is between its
// making and its binding, and after its unmount — and false otherwise.
func PinFile(path string) (ino uint64, ok bool) {
	var fs unix.Statfs_t
	if unix.Statfs(path, &fs) != nil || fs.Type == unix.NSFS_MAGIC {
		return 0, false
	}
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
		return 0, false
	}
	return st.Ino, true
}

var prepared sync.Map // dir -> struct{}: done once per process

// prepareNetnsDir makes dir a shared mount point, as iproute2 does, so that
// namespaces pinned there are visible in mount namespaces made later (those
// of `ip netns exec` and of exec_in) and the other way round.
func prepareNetnsDir(dir string) error {
	if _, ok := prepared.Load(dir); ok {
		return nil
	}
	if err := makeShared(dir); err != nil {
		return err
	}
	prepared.Store(dir, struct{}{})
	return nil
}

func makeShared(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err == nil {
		return nil
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s: %w", dir, err)
	}
	return unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
}
