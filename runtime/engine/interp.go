package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/nsrun/nsrun/runtime/clab"
)

// FileOptions are the dialect of recipes, for files and the REPL alike:
// recipes build topologies in loops, so top-level control flow, while and
// set are on. Recursion stays off, so every recipe terminates or hits the
// step limit.
var FileOptions = &syntax.FileOptions{
	Set:             true,
	While:           true,
	TopLevelControl: true,
	GlobalReassign:  true,
}

// StdPrefix names the standard library embedded in the binary.
const StdPrefix = "@std//"

// Interp executes recipe files and the libraries they load(), all on one
// thread, so that everything a library creates lands in the same journal.
type Interp struct {
	Predeclared starlark.StringDict
	Std         fs.FS     // the standard library (recipes/lib)
	Path        []string  // more library directories (-L, NSRUN_PATH)
	Warn        io.Writer // where what a containerlab file's recipe leaves out is said (nil: nowhere)

	cache map[string]*loaded
	root  string // the top recipe's directory: relative loads stay below it
	// sources holds what was read of each file, recipe and libraries: a
	// run executes what its preflight planned, and a FIFO, which can be
	// read only once, can be a recipe.
	sources map[string][]byte
}

// MaxSourceSize bounds a recipe and each file it loads: a recipe is a
// program, not data, and /dev/zero never ends.
const MaxSourceSize = 8 << 20

type loaded struct {
	globals starlark.StringDict
	err     error
	done    bool
}

// Reset forgets the modules loaded so far, so that a new run loads them
// again (their values belong to the run that loaded them).
func (in *Interp) Reset() { in.cache = nil }

// NewThread returns a thread that runs on rt and prints to out.
func (in *Interp) NewThread(name string, rt *Runtime, out io.Writer) *starlark.Thread {
	thread := &starlark.Thread{
		Name:  name,
		Print: func(_ *starlark.Thread, msg string) { fmt.Fprintln(out, msg) },
		Load:  in.load,
	}
	thread.SetLocal(interpKey, in)
	rt.Attach(thread)
	return thread
}

// ReadRecipe reads the recipe at path (see readSource) once: ExecFile
// executes what was read. A containerlab topology file (see clab.Is) is
// read as the recipe it makes, its warnings written to Warn once.
func (in *Interp) ReadRecipe(ctx context.Context, path string) ([]byte, error) {
	if !clab.Is(path) {
		return in.source(ctx, path, path)
	}
	key := "clab:" + path
	if src, ok := in.sources[key]; ok {
		return src, nil
	}
	raw, err := in.source(ctx, path, path)
	if err != nil {
		return nil, err
	}
	topo, err := clab.Translate(path, raw)
	if err != nil {
		return nil, err
	}
	if in.Warn != nil {
		for _, w := range topo.Warnings {
			fmt.Fprintf(in.Warn, "nsrun: %s\n", w)
		}
	}
	in.sources[key] = topo.Recipe
	return topo.Recipe, nil
}

// source returns the file at path, read once, under key.
func (in *Interp) source(ctx context.Context, key, path string) ([]byte, error) {
	if src, ok := in.sources[key]; ok {
		return src, nil
	}
	src, err := readSource(ctx, path)
	if err != nil {
		return nil, err
	}
	if in.sources == nil {
		in.sources = map[string][]byte{}
	}
	in.sources[key] = src
	return src, nil
}

// readSource reads a recipe or a library: at most MaxSourceSize bytes,
// and only until ctx ends, opening included (a FIFO's open waits for a
// writer, a terminal's read for a line, and neither stops for a signal).
func readSource(ctx context.Context, path string) ([]byte, error) {
	type result struct {
		src []byte
		err error
	}
	done := make(chan result, 1)
	go func() { // left blocked if ctx ends first: nsrun exits, or the input fails
		src, err := readCapped(path)
		done <- result{src, err}
	}()
	select {
	case r := <-done:
		return r.src, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("reading %s: %w", path, context.Cause(ctx))
	}
}

func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxSourceSize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxSourceSize {
		return nil, fmt.Errorf("%s is larger than %d MiB", path, MaxSourceSize>>20)
	}
	return src, nil
}

// threadCtx is the context a thread's run is cancelled with.
func threadCtx(thread *starlark.Thread) context.Context {
	if rt, err := FromThread(thread); err == nil && rt.Ctx != nil {
		return rt.Ctx
	}
	return context.Background()
}

// DefaultMaxMemory bounds the memory a recipe may have nsrun hold (its
// values, and what nsrun keeps of the lab): a 1,100-host lab takes under
// 100 MB, `"x" * 10**9` a gigabyte.
const DefaultMaxMemory = 512 << 20

// memoryPoll is how often a running recipe's memory is looked at: a
// gigabyte takes nsrun longer than that to fill.
const memoryPoll = 10 * time.Millisecond

// watchMemory cancels thread, with an error naming the limit, once the Go
// heap holds more than limit bytes. It looks from a goroutine of its own,
// every memoryPoll (the interpreter's steps are not slowed), and cancels
// at once: the recipe stops at the line where it passed the limit, or
// soon after (a collection first, to tell garbage from what the recipe
// holds, would let it run on; and a single huge value can stall the whole
// process while its pages are first touched). The heap it measures
// includes garbage not yet collected, which nsrun's collector settings
// (see collectLess in cmd/nsrun) keep to tens of MiB; what is over the
// limit before the thread starts is collected first. done ends the watch
// and returns the error if the limit was passed, during the run or, once
// the garbage is collected, at its end (where no line is left to name).
func watchMemory(thread *starlark.Thread, limit uint64) (done func() error) {
	msg := fmt.Sprintf("the recipe uses more than %d MiB of memory (--max-memory)", limit>>20)
	if heapBytes() > limit {
		goruntime.GC() // what an earlier thread left (a preflight stopped at the limit) is garbage
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	var over atomic.Bool
	go func() {
		defer close(stopped)
		tick := time.NewTicker(memoryPoll)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if heapBytes() > limit {
					over.Store(true)
					thread.Cancel(msg)
					return
				}
			}
		}
	}()
	return func() error {
		close(stop)
		<-stopped
		if over.Load() || overLimit(limit) {
			return errors.New(msg)
		}
		return nil
	}
}

// overLimit reports whether the heap holds more than limit bytes once its
// garbage is collected (a collection only when it seems to).
func overLimit(limit uint64) bool {
	if heapBytes() <= limit {
		return false
	}
	goruntime.GC()
	return heapBytes() > limit
}

// heapBytes is what the Go heap's objects take, live and not yet swept.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// ExecFile executes the recipe at path, read once (see ReadRecipe), and
// returns its globals.
func (in *Interp) ExecFile(thread *starlark.Thread, path string) (starlark.StringDict, error) {
	src, err := in.ReadRecipe(threadCtx(thread), path)
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(path); err == nil {
		in.remember(abs, &loaded{}) // a library that loads the recipe is a cycle
		in.root = filepath.Dir(abs)
	}
	return starlark.ExecFileOptions(FileOptions, thread, path, src, in.Predeclared)
}

func (in *Interp) remember(key string, l *loaded) {
	if in.cache == nil {
		in.cache = map[string]*loaded{}
	}
	in.cache[key] = l
}

// load resolves a module name against the loading file's directory, then
// the standard library (@std//name.star) or the library path.
func (in *Interp) load(thread *starlark.Thread, module string) (starlark.StringDict, error) {
	from := thread.CallFrame(0).Pos.Filename()
	key, read, err := in.resolve(from, module)
	if err != nil {
		return nil, err
	}
	if l, ok := in.cache[key]; ok {
		if !l.done {
			return nil, fmt.Errorf("cycle in load graph: %s loads %s, which is still loading", from, module)
		}
		return l.globals, l.err
	}
	l := &loaded{}
	in.remember(key, l)
	src, err := read(threadCtx(thread))
	if err == nil {
		l.globals, err = starlark.ExecFileOptions(FileOptions, thread, key, src, in.Predeclared)
	}
	l.err, l.done = err, true
	return l.globals, err
}

// resolve returns a module's canonical name (an absolute path, or
// @std//name.star) and how to read it.
func (in *Interp) resolve(from, module string) (string, func(context.Context) ([]byte, error), error) {
	if !strings.HasSuffix(module, ".star") {
		return "", nil, fmt.Errorf("load(%q): a module name ends in .star", module)
	}
	return in.find(fmt.Sprintf("load(%q)", module), "module", from, module)
}

// find resolves name (a module or a data file: what), asked for by call
// in file from: an absolute path is used as it is; a relative one is
// looked up in from's directory (in the standard library, for a file of
// its own), then in each library
// directory, and must stay below the recipe's directory or one of them;
// @std//name is in the standard library. It returns the file's canonical
// name (an absolute path, or @std//name) and how to read it, once a run.
func (in *Interp) find(call, what, from, name string) (string, func(context.Context) ([]byte, error), error) {
	std := func(rel string) (string, func(context.Context) ([]byte, error), error) {
		rel = filepath.ToSlash(filepath.Clean(rel))
		if in.Std == nil || !fs.ValidPath(rel) {
			return "", nil, fmt.Errorf("%s: no such %s in the standard library", call, what)
		}
		if _, err := fs.Stat(in.Std, rel); err != nil {
			return "", nil, fmt.Errorf("%s: no such %s in the standard library", call, what)
		}
		return StdPrefix + rel, func(context.Context) ([]byte, error) { return fs.ReadFile(in.Std, rel) }, nil
	}
	if rel, ok := strings.CutPrefix(name, StdPrefix); ok {
		return std(rel)
	}
	if rel, ok := strings.CutPrefix(from, StdPrefix); ok && !filepath.IsAbs(name) {
		return std(filepath.Join(filepath.Dir(rel), name))
	}
	if filepath.IsAbs(name) { // the recipe's author chose it
		abs := filepath.Clean(name)
		if _, err := os.Stat(abs); err != nil {
			return "", nil, fmt.Errorf("%s: no such file", call)
		}
		return abs, func(ctx context.Context) ([]byte, error) { return in.source(ctx, abs, abs) }, nil
	}
	candidates := []string{filepath.Join(filepath.Dir(from), name)}
	for _, dir := range in.Path {
		candidates = append(candidates, filepath.Join(dir, name))
	}
	for _, c := range candidates {
		abs, err := filepath.Abs(c)
		if err != nil {
			continue
		}
		if !in.within(abs) {
			return "", nil, fmt.Errorf("%s: %s escapes the recipe's directory %s (use -L DIR to add a library directory, or an absolute path)", call, abs, in.root)
		}
		if _, err := os.Stat(abs); err == nil {
			return abs, func(ctx context.Context) ([]byte, error) { return in.source(ctx, abs, abs) }, nil
		}
	}
	return "", nil, fmt.Errorf("%s: no such file (looked in %s)", call, strings.Join(candidates, ", "))
}

// ReadData reads the data file name that load_data() asks for on thread,
// found as load() finds a module (see find) and read once a run, and
// returns its canonical name and contents.
func ReadData(thread *starlark.Thread, name string) (string, []byte, error) {
	in, _ := thread.Local(interpKey).(*Interp)
	if in == nil {
		return "", nil, errors.New("load_data: no recipe is running")
	}
	from := ""
	if thread.CallStackDepth() > 1 {
		from = thread.CallFrame(1).Pos.Filename()
	}
	key, read, err := in.find(fmt.Sprintf("load_data(%q)", name), "file", from, name)
	if err != nil {
		return "", nil, err
	}
	src, err := read(threadCtx(thread))
	return key, src, err
}

// interpKey is the thread-local key of the Interp a thread runs on.
const interpKey = "nsrun.interp"

// within reports whether path is below the recipe's directory or a library
// directory: a recipe loads only files it (or its user) chose to share.
func (in *Interp) within(path string) bool {
	dirs := append([]string{in.root}, in.Path...)
	for _, d := range dirs {
		if d == "" {
			continue
		}
		d, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(d, path); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return in.root == ""
}

// Backtrace renders err as a person should see it: the innermost Starlark
// traceback (load() wraps a library's error, and would hide its line), then
// the message; for a queued change that failed, the traceback of the call
// that asked for it.
func Backtrace(err error) string {
	var ce *changeError
	if errors.As(err, &ce) {
		return (&starlark.EvalError{Msg: ce.Error(), CallStack: ce.stack}).Backtrace()
	}
	inner := innermost(err)
	if inner == nil {
		return err.Error()
	}
	// fail()'s message starts "fail: ", and the backtrace says "Error in
	// fail: " before it: once is enough.
	bt := strings.Replace(inner.Backtrace(), "Error in fail: fail: ", "Error in fail: ", 1)
	return strings.Replace(bt, "Starlark computation cancelled: too many steps", "Starlark computation cancelled: too many steps (more than --max-steps allows)", 1)
}

// innermost returns the innermost Starlark evaluation error in err's chain
// (load() wraps a library's), or nil.
func innermost(err error) *starlark.EvalError {
	var inner *starlark.EvalError
	for e := err; e != nil; {
		var ev *starlark.EvalError
		if !errors.As(e, &ev) {
			break
		}
		inner = ev
		e = ev.Unwrap()
	}
	return inner
}
