package nsexec

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// NodeEnv carries, to the helper, the directory of the node a command runs
// in (see Node); CwdEnv the directory it starts in, as the node shows it.
const (
	NodeEnv = "NSRUN_NODE"
	CwdEnv  = "NSRUN_CWD"
)

// A Node is the directory where a lab keeps what a namespace of its shows
// over the machine's filesystem, to every process nsrun starts in it:
//
//	DIR/private/ENC   a directory shown, private to the node, at the path ENC encodes
//	DIR/files/ENC     a file shown at the path ENC encodes
//	DIR/.ovl          where a command mounts the overlays' upper layers (a tmpfs of its own)
//
// Nothing of the machine's is changed: the helper shows these in the
// command's own mount namespace. A path that does not exist on the machine
// is made to appear by an overlay over its nearest existing ancestor, whose
// upper layer lives and dies with the command's mount namespace.
type Node string

// NodeOf returns the node of namespace ns in the lab whose record
// directory is labDir.
func NodeOf(labDir, ns string) Node { return Node(filepath.Join(labDir, "nodes", ns)) }

// Exists reports whether the node shows anything of its own yet.
func (n Node) Exists() bool {
	_, err := os.Stat(string(n))
	return err == nil
}

// Make creates the node's directory, with its mount point for overlays.
func (n Node) Make() error { return os.MkdirAll(filepath.Join(string(n), ".ovl"), 0o700) }

// NodeEntry is a directory or a file a node shows.
type NodeEntry struct {
	Path string // where the node shows it
	Src  string // where the lab keeps it
	Dir  bool
}

// EncodePath names, in a node's directory, what the node shows at path.
func EncodePath(path string) string { return url.PathEscape(path) }

// PrivateDir and File are where the lab keeps the directory or file that
// the node shows at path.
func (n Node) PrivateDir(path string) string {
	return filepath.Join(string(n), "private", EncodePath(path))
}
func (n Node) File(path string) string { return filepath.Join(string(n), "files", EncodePath(path)) }

// Entries lists what the node shows, by path.
func (n Node) Entries() ([]NodeEntry, error) {
	var out []NodeEntry
	for _, kind := range []string{"private", "files"} {
		dir := filepath.Join(string(n), kind)
		names, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range names {
			path, err := url.PathUnescape(e.Name())
			if err != nil || !filepath.IsAbs(path) || filepath.Clean(path) != path {
				continue // not one of ours
			}
			out = append(out, NodeEntry{Path: path, Src: filepath.Join(dir, e.Name()), Dir: kind == "private"})
		}
	}
	slices.SortFunc(out, func(a, b NodeEntry) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// Resolve returns where nsrun finds what a process in the node sees at path:
// in a private directory or a file of the node's, or else the machine's.
func (n Node) Resolve(path string) string {
	entries, _ := n.Entries()
	for _, e := range entries {
		if e.Path == path {
			return e.Src
		}
		if rel, ok := strings.CutPrefix(path, e.Path+"/"); ok && e.Dir {
			return filepath.Join(e.Src, rel)
		}
	}
	return path
}

// PrivateOf returns the node's private directory that path lies in, if any.
func (n Node) PrivateOf(path string) (NodeEntry, bool) {
	entries, _ := n.Entries()
	for _, e := range entries {
		if e.Dir && (path == e.Path || strings.HasPrefix(path, e.Path+"/")) {
			return e, true
		}
	}
	return NodeEntry{}, false
}

// show makes the command's mount namespace show the node's entries (see
// Node). It runs in the helper, before the command is executed.
func (n Node) show() error {
	entries, err := n.Entries()
	if err != nil || len(entries) == 0 {
		return err
	}
	// Detached copies of the sources first: an overlay may hide their path.
	srcs := make([]int, len(entries))
	for i, e := range entries {
		fd, err := unix.OpenTree(unix.AT_FDCWD, e.Src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return fmt.Errorf("taking %s: %w", e.Src, err)
		}
		srcs[i] = fd
	}
	var missing []gap
	for _, e := range entries {
		fi, err := os.Stat(e.Path)
		switch {
		case err == nil && fi.IsDir() != e.Dir:
			return fmt.Errorf("%s is a %s on the machine", e.Path, kindOf(fi))
		case err == nil:
			continue
		case !errors.Is(err, os.ErrNotExist):
			return err
		}
		g, err := gapOf(e)
		if err != nil {
			return err
		}
		missing = append(missing, g)
	}
	if len(missing) > 0 {
		if err := n.overlay(missing); err != nil {
			return err
		}
	}
	for i, e := range entries {
		if err := unix.MoveMount(srcs[i], "", unix.AT_FDCWD, e.Path, unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_SYMLINKS); err != nil {
			return fmt.Errorf("showing %s at %s: %w", e.Src, e.Path, err)
		}
		unix.Close(srcs[i])
	}
	return nil
}

func kindOf(fi os.FileInfo) string {
	if fi.IsDir() {
		return "directory"
	}
	return "file"
}

// A gap is an entry whose path does not exist on the machine: below its
// nearest existing ancestor, whose real path (symbolic links resolved) is
// root.
type gap struct {
	NodeEntry
	ancestor, root string
}

func gapOf(e NodeEntry) (gap, error) {
	for dir := filepath.Dir(e.Path); ; dir = filepath.Dir(dir) {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			return gap{e, dir, real}, nil
		}
		if !errors.Is(err, os.ErrNotExist) || dir == "/" {
			return gap{}, err
		}
	}
}

// overlay lays an overlay over each of roots, the nearest existing
// ancestors of the missing entries, whose upper layer holds an empty
// directory or file where each is to be shown. What is mounted beneath a
// root stays where it was.
func (n Node) overlay(missing []gap) error {
	stage := filepath.Join(string(n), ".ovl")
	if err := unix.Mount("tmpfs", stage, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("mounting the overlays' tmpfs on %s: %w", stage, err)
	}
	var roots []string
	for _, g := range missing {
		roots = append(roots, g.root)
	}
	outer := outermost(roots)
	for i, root := range outer {
		if strings.ContainsAny(root, ",:\\") {
			return fmt.Errorf("cannot lay an overlay on %s (a comma, colon or backslash in its path)", root)
		}
		upper := filepath.Join(stage, fmt.Sprint(i), "upper")
		work := filepath.Join(stage, fmt.Sprint(i), "work")
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		for _, g := range missing {
			if !within(g.root, root) {
				continue
			}
			at := filepath.Join(upper, strings.TrimPrefix(g.root, root), strings.TrimPrefix(g.Path, g.ancestor))
			if err := placeholder(at, g.Dir); err != nil {
				return err
			}
		}
		subs, err := submounts(root)
		if err != nil {
			return err
		}
		fds := make([]int, len(subs))
		for k, s := range subs {
			fd, err := unix.OpenTree(unix.AT_FDCWD, s, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
			if err != nil {
				return fmt.Errorf("keeping the mount on %s: %w", s, err)
			}
			fds[k] = fd
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", root, upper, work)
		if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
			return fmt.Errorf("laying an overlay on %s: %w", root, err)
		}
		for k, s := range subs {
			if err := unix.MoveMount(fds[k], "", unix.AT_FDCWD, s, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return fmt.Errorf("putting the mount on %s back: %w", s, err)
			}
			unix.Close(fds[k])
		}
	}
	return nil
}

func placeholder(at string, dir bool) error {
	if dir {
		return os.MkdirAll(at, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(at, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// within reports whether path is dir or lies beneath it.
func within(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}

// outermost drops from dirs those beneath another of them.
func outermost(dirs []string) []string {
	var out []string
	for _, d := range slices.Sorted(slices.Values(dirs)) {
		if len(out) == 0 || !within(d, out[len(out)-1]) {
			out = append(out, d)
		}
	}
	return out
}

// submounts returns the outermost mount points strictly beneath root.
func submounts(root string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		if p != root && within(p, root) {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return outermost(points), nil
}

// unescapeMount decodes the octal escapes of a mountinfo path (\040 for a
// space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
