package builtins

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nsexec"
	"go.starlark.net/starlark"
)

// A node's files: what every process nsrun starts in a namespace of the lab
// sees over the machine's filesystem (see nsexec.Node). Private directories
// and written files live in the lab's record directory and go with it; the
// machine's own files are never changed.

// nodePath is an absolute path where a node shows a directory or a file.
type nodePath string

func (p *nodePath) Unpack(v starlark.Value) error {
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want an absolute path", v.Type())
	}
	if err := checkNodePath(s); err != nil {
		return err
	}
	*p = nodePath(s)
	return nil
}

func checkNodePath(s string) error {
	switch {
	case !filepath.IsAbs(s):
		return fmt.Errorf("%q is not an absolute path", s)
	case filepath.Clean(s) != s || strings.Contains(s, "/../"):
		return fmt.Errorf("%q is not a clean path (no \"..\", no \"//\", no trailing \"/\")", s)
	case s == "/":
		return fmt.Errorf("the root directory cannot be a node's own")
	case strings.ContainsAny(s, ",:\\"):
		return fmt.Errorf("%q: nsrun cannot show a path with a comma, colon or backslash", s)
	}
	for _, k := range []string{"/proc", "/sys", "/dev"} {
		if s == k || strings.HasPrefix(s, k+"/") {
			return fmt.Errorf("%q is under %s, which the kernel shows (not a file a node can have)", s, k)
		}
	}
	return nil
}

// owner is a user of the machine, by name, who is to own a node's directory
// or file (with the user's primary group); None: root.
type owner struct {
	name     string
	uid, gid int
}

func (o *owner) Unpack(v starlark.Value) error {
	if v == starlark.None {
		return nil
	}
	name, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("got %s, want a user name or None", v.Type())
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("no user %q on this machine", name)
	}
	o.name = name
	o.uid, _ = strconv.Atoi(u.Uid)
	o.gid, _ = strconv.Atoi(u.Gid)
	return nil
}

// nodeOf returns, for a change to namespace ns's files, its node, made if
// need be; on a kernel that only records, it notes plan instead and
// returns "" and no error.
func nodeOf(k kernel.Kernel, rt *engine.Runtime, ns, plan string) (nsexec.Node, error) {
	if p, ok := kernel.As[kernel.Planner](k); ok {
		p.Note(plan)
		return "", nil
	}
	node, err := rt.Node(ns)
	if err != nil {
		return "", err
	}
	if err := node.Make(); err != nil {
		return "", err
	}
	return node, nil
}

// checkPrivate checks that no two private directories overlap.
func checkPrivate(paths []string) error {
	for i, p := range paths {
		for _, q := range paths[:i] {
			if p == q || strings.HasPrefix(p, q+"/") || strings.HasPrefix(q, p+"/") {
				return fmt.Errorf("private: %s and %s overlap (give the outer one)", q, p)
			}
		}
	}
	return nil
}

// privateDirs journals the namespace's private directories, in order.
func privateDirs(thread *starlark.Thread, rt *engine.Runtime, ns string, paths []string, who owner) error {
	for _, path := range paths {
		s := journal.Step{Op: journal.OpPrivate, NS: ns, Name: path, New: who.name}
		if node, err := rt.Node(ns); err == nil {
			s.Path = node.PrivateDir(path)
		}
		err := rt.Later(thread, s, func(k kernel.Kernel, s *journal.Step) error {
			node, err := nodeOf(k, rt, ns, fmt.Sprintf("netns %s: private directory %s", ns, path))
			if node == "" {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
				return err
			}
			if err := os.Mkdir(s.Path, 0o755); err != nil {
				return err
			}
			return os.Lchown(s.Path, who.uid, who.gid)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// node returns the namespace's node, for a namespace the lab created.
func (n *Netns) node(b *starlark.Builtin, rt *engine.Runtime) error {
	if n.name == kernel.Host {
		return fmt.Errorf("%s: host() shows the machine's own files; a node's files are for a namespace the lab created", b.Name())
	}
	if !rt.OwnsNetns(n.name) {
		return fmt.Errorf("%s: netns %q was not created by this lab", b.Name(), n.Name())
	}
	return nil
}

// ns.write_file(path, content, mode=0o644, owner=None) makes every process
// nsrun starts in the namespace see a file at path with content, whether or
// not path exists on the machine — as `ip netns exec` shows
// /etc/netns/NAME/* over /etc, without writing into the machine's /etc. A
// path in one of the node's private directories is written there. Written
// again, the file has the new content; rollback puts the old one back.
//
// Equivalent to: mkdir -p /etc/netns/$ns; cat > /etc/netns/$ns/FILE
func netnsWriteFile(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := b.Receiver().(*Netns)
	var path nodePath
	var content string
	mode := 0o644
	var who owner
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "content", &content, "mode?", &mode, "owner?", &who); err != nil {
		return nil, err
	}
	if mode < 0 || mode > 0o7777 {
		return nil, fmt.Errorf("%s: mode %#o is not a file mode (0 to 0o7777)", b.Name(), mode)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if err := n.node(b, rt); err != nil {
		return nil, err
	}
	ns, p := n.name, string(path)
	s := journal.Step{Op: journal.OpFile, NS: ns, Name: p, New: fmt.Sprintf("%#o", mode), Sum: engine.Sum(content, who.name)}
	err = rt.Later(thread, s, func(k kernel.Kernel, s *journal.Step) error {
		node, err := nodeOf(k, rt, ns, fmt.Sprintf("netns %s: write %s (%d bytes)", ns, p, len(content)))
		if node == "" {
			return err
		}
		s.Path = fileSrc(node, p)
		return placeFile(node, s, content, os.FileMode(mode), who)
	})
	if err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// fileSrc is where the lab keeps the file the node shows at path: in the
// node's private directory that path lies in, if there is one, or with the
// node's files.
func fileSrc(node nsexec.Node, path string) string {
	if e, ok := node.PrivateOf(path); ok {
		return filepath.Join(e.Src, strings.TrimPrefix(path, e.Path))
	}
	return node.File(path)
}

// placeFile writes content to s.Path, setting aside what was there (s.Old)
// for the undo to put back.
func placeFile(node nsexec.Node, s *journal.Step, content string, mode os.FileMode, who owner) error {
	dir := filepath.Dir(s.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := os.Lstat(s.Path); err == nil {
		prev, err := os.MkdirTemp(filepath.Join(string(node)), "prev-")
		if err != nil {
			return err
		}
		s.Old = filepath.Join(prev, "content")
		if err := os.Rename(s.Path, s.Old); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".write-")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(content)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Chown(who.uid, who.gid)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.Path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// ns.read_file(path) returns what a process nsrun starts in the namespace
// reads at path: a file the lab wrote, one in a private directory (a
// daemon's output, a lease), or else the machine's.
//
// Equivalent to: ip netns exec $ns cat PATH
func netnsReadFile(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := b.Receiver().(*Netns)
	var path nodePath
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path); err != nil {
		return nil, err
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	if err := n.node(b, rt); err != nil {
		return nil, err
	}
	if err := rt.Sync(); err != nil {
		return nil, err
	}
	k, err := rt.Kernel()
	if err != nil {
		return nil, err
	}
	if p, ok := kernel.As[kernel.Planner](k); ok {
		p.Observe()
		return starlark.String(""), nil
	}
	node, err := rt.Node(n.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	data, err := os.ReadFile(node.Resolve(string(path)))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %s in netns %q: %w", b.Name(), path, n.Name(), err)
	}
	return starlark.String(data), nil
}

// pathList is a list of node paths.
type pathList []string

func (l *pathList) Unpack(v starlark.Value) error {
	it, ok := v.(starlark.Iterable)
	if !ok || v.Type() == "string" {
		return fmt.Errorf("got %s, want a list of absolute paths", v.Type())
	}
	iter := it.Iterate()
	defer iter.Done()
	var x starlark.Value
	for iter.Next(&x) {
		var p nodePath
		if err := p.Unpack(x); err != nil {
			return err
		}
		*l = append(*l, string(p))
	}
	return nil
}
