package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// progressLine shows, on a terminal, how many of a run's planned changes
// are made: `nsrun: made N/M changes` on one line, redrawn at most ten
// times a second and erased at the end, or before anything else is
// printed to the terminal through one of its writers. The engine tells it
// of each change (see engine.Reporter); a nil line shows nothing.
type progressLine struct {
	mu    sync.Mutex
	w     io.Writer
	last  time.Time
	shown bool
}

// newProgressLine returns a progress line on w, or nil if w is not a
// terminal: logs and pipes get no progress.
func newProgressLine(w io.Writer) *progressLine {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &progressLine{w: w}
}

// show draws the count, made of planned, unless it was drawn less than a
// tenth of a second ago.
func (p *progressLine) show(made, planned int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		total := max(planned, made) // a recipe may do more than it planned (loops on live answers)
		fmt.Fprintf(p.w, "\r\x1b[Knsrun: made %d/%d changes", made, total)
		p.shown = true
	}
}

// clear erases the line, if it is shown; the next show draws it again.
func (p *progressLine) clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.erase()
}

func (p *progressLine) erase() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
		p.last = time.Time{}
	}
}

// writer returns w, erasing the line before each write to it.
func (p *progressLine) writer(w io.Writer) io.Writer {
	if p == nil {
		return w
	}
	return writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.erase()
		return w.Write(b)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
