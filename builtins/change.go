package builtins

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"go.starlark.net/starlark"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// A builtin makes a change of the lab's, once it has checked that the lab
// may (Netns.mutable, Link.mutable), through later or now: the runtime
// journals it as step s, and its failure reads as w says. (netns() and the
// nat table word an existing object their own way, with rt.Later and
// rt.Change.)

// later queues a change (rt.Later; made at once if the run is not
// pipelined). Its failure is worded where the change is made, since a later
// call returns it. work must be self-contained (see rt.Later).
func later(thread *starlark.Thread, rt *engine.Runtime, s journal.Step, w wording, work engine.Work) error {
	return rt.Later(thread, s, func(k kernel.Kernel, s *journal.Step) error { return w.wrap(work(k, s)) })
}

// now makes a change at once (rt.Change). Its failure, the journal's or an
// earlier queued change's, reads as w says.
func now(thread *starlark.Thread, rt *engine.Runtime, s journal.Step, w wording, work engine.Work) error {
	return w.wrap(rt.Change(thread, s, work))
}

// A wording says how a failure reads: "what: cause", what being a format
// and its arguments, formatted only on failure.
type wording struct {
	format string
	args   []any
	exists string // if not "", the cause in place of "file exists", which names nothing
}

func says(format string, a ...any) wording { return wording{format: format, args: a} }

// orExists is w with msg as the cause in place of os.ErrExist.
func (w wording) orExists(msg string) wording {
	w.exists = msg
	return w
}

func (w wording) wrap(err error) error {
	if err == nil {
		return nil
	}
	if w.exists != "" && errors.Is(err, os.ErrExist) {
		err = errors.New(w.exists)
	}
	return fmt.Errorf(w.format+": %w", append(slices.Clip(w.args), err)...)
}
