package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/chzyer/readline"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/nsrun/nsrun/builtins"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/store"
	"github.com/nsrun/nsrun/runtime/words"
)

func init() {
	register(command{"repl", "[flags] [RECIPE [ARGS...] | LAB]", "an interactive session on a lab (a new one, or one that is up); each input is rolled back if it fails", cmdRepl})
}

func cmdRepl(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("repl", "[flags] [RECIPE [ARGS...]]", stderr)
	fs.SetInterspersed(false)
	name := fs.String("name", "", `name of the lab (default: the recipe's base name, or "repl")`)
	prefix := fs.String("prefix", "", "scope the lab's names: namespaces PREFIX-NAME, host links PREFIX-NAME within 15 bytes, the lab PREFIX-RECIPE (one recipe up twice)")
	keep := fs.Bool("keep", false, "at the end (Ctrl-D), leave the lab up instead of tearing it down (`nsrun down LAB` removes it)")
	sandbox := fs.Bool("sandbox", false, sandboxUsage)
	verbose := fs.BoolP("verbose", "v", false, "print each change as it is made")
	libs := fs.StringArrayP("lib", "L", nil, "a directory to search for load()ed libraries (repeatable; also $NSRUN_PATH)")
	maxSteps := fs.Uint64("max-steps", engine.DefaultMaxSteps, "stop an input, and roll it back, after this many Starlark steps")
	maxMemory := fs.Uint64("max-memory", engine.DefaultMaxMemory>>20, "stop an input, and roll it back, once nsrun holds more than this many MiB of memory")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: nsrun repl [flags] [RECIPE [ARGS...] | LAB]

An interactive Starlark session on one lab (shown by nsrun ls while it runs).
With a RECIPE, the recipe runs first and its globals are in scope; if it
fails, it is rolled back and the session starts without them.

With LAB, a lab that is up (see nsrun ls), the session is on it: its
namespaces and links are found by name, ns("ns1") and link("ns1",
"veth1"), and each input changes it as a transaction; Ctrl-D leaves it up.

Each input is a transaction: if it fails (an error, fail(), Ctrl-C), what it
created is rolled back and the globals it assigned are dropped; earlier
inputs' work stays. A lone expression's value is printed. help() lists the
builtins, help(veth) documents one. Tab completes builtins, globals,
attributes after "x.", and inside a string the lab's namespace names (link
names after .link(").

Ctrl-C cancels the running input (at the prompt: a new prompt). Ctrl-D ends
the session and tears the lab down, unless --keep. History is kept in
$XDG_STATE_HOME/nsrun/history or ~/.nsrun_history (on a terminal only).

Flags:
%s`, fs.FlagUsages())
	}
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	if fs.Changed("name") && *name == "" {
		fmt.Fprintln(stderr, "nsrun repl: --name is empty (leave it out for the default)")
		return engine.ExitUsage
	}
	inside, code, done := enterIfSandboxed(*sandbox, *keep, stderr)
	if done {
		return code
	}
	if !inside {
		if err := needAdmin(); err != nil {
			fmt.Fprintf(stderr, "nsrun repl: %v\n", err)
			return engine.ExitUsage
		}
	}
	var recipe, lab string
	var argv []string
	if fs.NArg() > 0 {
		recipe, argv = fs.Arg(0), fs.Args()[1:]
	}
	if recipe != "" && isLab(recipe) {
		if len(argv) > 0 || *name != "" {
			fmt.Fprintf(stderr, "nsrun repl: %s is a lab that is up: it takes no arguments or --name\n", recipe)
			return engine.ExitUsage
		}
		lab, recipe = recipe, ""
	}
	k := kernel.NewNetlink(store.NetnsDir)
	defer k.Close()
	interp := newInterp(argv, *libs)
	interp.Predeclared["help"] = builtins.Help
	// Signals are caught from before the session's lab exists until its
	// teardown is done.
	r := &repl{out: stdout, stderr: stderr}
	stop := r.catchSignals()
	defer stop()
	o := engine.RunOptions{
		Recipe: recipe, Args: argv, Lab: *name, Prefix: *prefix, StateDir: store.StateDir, Kernel: k,
		Interp: interp, Stdout: stdout, Stderr: stderr, Reporter: &reporter{stderr: stderr},
		Verbose: *verbose, MaxSteps: *maxSteps, MaxMemory: *maxMemory << 20,
	}
	open := engine.OpenSession
	if lab != "" {
		o.Lab, open = lab, engine.AttachSession
	}
	s, err := open(o)
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: %v\n", err)
		return engine.ExitUsage
	}
	in := newLineReader(stdout, stderr, &completer{s})
	r.setInput(s, in)
	if recipe != "" {
		r.transaction(func(ctx context.Context) {
			if res := s.RunRecipe(ctx); res.Err != nil {
				printUndo(stderr, "rolled back", res)
				fmt.Fprintf(stderr, "nsrun: the recipe failed and was rolled back; the session starts without its globals\n")
			}
		})
	}
	for !r.terminated() {
		f, err := r.read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			continue
		}
		r.transaction(func(ctx context.Context) {
			switch v, res := s.Eval(ctx, f); {
			case res.Err != nil:
				printUndo(stderr, "rolled back", res)
			case v != starlark.None:
				fmt.Fprintln(stdout, v)
			}
		})
	}
	in.Close()
	res := s.Close(*keep)
	if *keep || s.Attached() {
		printRecordErr(stderr, res)
		fmt.Fprintf(stderr, "nsrun: lab %q is up (%s); remove it with `nsrun down %s`\n", res.Lab, words.Plural(len(res.Made), "change"), res.Lab)
	} else {
		printUndo(stderr, "removed", res)
	}
	stop()
	code = codeOf(res)
	return holdIfKept(inside && *keep, code)
}

// isLab reports whether arg names a lab on record rather than a recipe: no
// file of that name, and no ".star" ending.
func isLab(arg string) bool {
	if strings.HasSuffix(arg, ".star") || strings.ContainsRune(arg, '/') {
		return false
	}
	if _, err := os.Stat(arg); err == nil {
		return false
	}
	_, err := os.Stat(filepath.Join(store.StateDir, arg, "lab.json"))
	return err == nil
}

// repl is the loop's state: the input being run, and whether a signal
// asked the session to end.
type repl struct {
	s           *engine.Session
	in          lineReader
	out, stderr io.Writer

	mu     sync.Mutex
	cancel context.CancelCauseFunc // of the running input; nil at the prompt
	term   bool
}

// setInput gives the loop its session and reader; if a signal already
// asked the session to end, the reader is closed at once.
func (r *repl) setInput(s *engine.Session, in lineReader) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s, r.in = s, in
	if r.term {
		in.Close()
	}
}

// catchSignals makes SIGINT cancel the running input (at a terminal's
// prompt readline gets Ctrl-C as a key instead), and SIGTERM or SIGHUP (the
// terminal closed) cancel it and end the session, which then tears the lab
// down. Until the returned stop, no signal stops nsrun: a rollback or the
// teardown, once started, finishes.
func (r *repl) catchSignals() func() {
	sigs := make(chan os.Signal, 4)
	if len(stopSignals) > 0 {
		signal.Notify(sigs, stopSignals...)
	}
	done := make(chan struct{})
	go func() {
		for {
			var sig os.Signal
			select {
			case sig = <-sigs:
			case <-done:
				return
			}
			r.mu.Lock()
			if r.cancel != nil {
				r.cancel(fmt.Errorf("interrupted by %s", signalName(sig)))
			}
			if sig != syscall.SIGINT && !r.term {
				r.term = true
				if r.in != nil {
					r.in.Close()
				}
			}
			r.mu.Unlock()
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { signal.Stop(sigs); close(done) }) }
}

func (r *repl) terminated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.term
}

// transaction runs fn with a context that a signal cancels.
func (r *repl) transaction(fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancelCause(context.Background())
	r.mu.Lock()
	r.cancel = cancel
	if r.term {
		cancel(errors.New("terminated"))
	}
	r.mu.Unlock()
	fn(ctx)
	r.mu.Lock()
	r.cancel = nil
	r.mu.Unlock()
	cancel(nil)
}

// read reads one statement, over several lines if it is compound. It
// returns io.EOF at the end of input; any other error has been reported
// (or was a Ctrl-C at the prompt).
func (r *repl) read() (*syntax.File, error) {
	r.in.SetPrompt(">>> ")
	var eof, interrupted bool
	var lost error
	f, err := engine.ReplOptions.ParseCompoundStmt("<stdin>", func() ([]byte, error) {
		line, err := r.in.Readline()
		r.in.SetPrompt("... ")
		switch {
		case errors.Is(err, io.EOF):
			eof = true
		case errors.Is(err, readline.ErrInterrupt):
			interrupted = true
		case err == nil:
			return []byte(line + "\n"), nil
		default:
			lost = err // the input is gone (a terminal that hung up: EIO)
		}
		return nil, err
	})
	switch {
	case eof:
		return nil, io.EOF
	case lost != nil:
		fmt.Fprintf(r.stderr, "nsrun: reading input: %v\n", lost)
		return nil, io.EOF
	case interrupted:
		return nil, readline.ErrInterrupt
	case err != nil:
		fmt.Fprintln(r.stderr, err)
	}
	return f, err
}

// lineReader reads input lines: readline on a terminal, plain lines (no
// prompts, no history) otherwise.
type lineReader interface {
	Readline() (string, error)
	SetPrompt(string)
	Close() error
}

func newLineReader(stdout, stderr io.Writer, c readline.AutoCompleter) lineReader {
	if !readline.IsTerminal(int(os.Stdin.Fd())) || !readline.IsTerminal(int(os.Stdout.Fd())) {
		return &plainReader{r: bufio.NewReader(os.Stdin)}
	}
	rl, err := readline.NewEx(&readline.Config{
		Prompt:          ">>> ",
		HistoryFile:     historyFile(),
		AutoComplete:    c,
		InterruptPrompt: "^C",
		EOFPrompt:       "",
		Stdout:          stdout,
		Stderr:          stderr,
	})
	if err != nil {
		fmt.Fprintf(stderr, "nsrun: no line editing: %v\n", err)
		return &plainReader{r: bufio.NewReader(os.Stdin)}
	}
	return rl
}

// historyFile is $XDG_STATE_HOME/nsrun/history, else ~/.nsrun_history.
func historyFile() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		dir := filepath.Join(d, "nsrun")
		if os.MkdirAll(dir, 0o700) == nil {
			return filepath.Join(dir, "history")
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".nsrun_history")
	}
	return ""
}

type plainReader struct {
	mu     sync.Mutex
	r      *bufio.Reader
	closed bool
}

func (p *plainReader) SetPrompt(string) {}

func (p *plainReader) Readline() (string, error) {
	line, err := p.r.ReadString('\n')
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed || (err != nil && line == "") {
		return "", io.EOF
	}
	return strings.TrimSuffix(line, "\n"), nil
}

func (p *plainReader) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}
