package runtime

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Progress shows, on a terminal, how many of a run's planned changes are
// made: one line, redrawn at most ten times a second and erased at the end
// or before anything else is printed to the terminal.
type Progress struct {
	mu          sync.Mutex
	w           io.Writer
	verb        string
	done, total int
	last        time.Time
	shown       bool
}

// NewProgress returns a progress line on w for total changes, or nil if w
// is not a terminal: logs and pipes get no progress.
func NewProgress(w io.Writer, verb string, total int) *Progress {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &Progress{w: w, verb: verb, total: total}
}

// Add counts n changes made.
func (p *Progress) Add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		total := max(p.total, p.done) // a recipe may do more than it planned (loops on live answers)
		fmt.Fprintf(p.w, "\r\x1b[Knsrun: %s %d/%d changes", p.verb, p.done, total)
		p.shown = true
	}
}

// Clear erases the line, if it is shown; the next Add draws it again.
func (p *Progress) Clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *Progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
		p.last = time.Time{}
	}
}

// Writer returns w, erasing the line before each write to it.
func (p *Progress) Writer(w io.Writer) io.Writer {
	if p == nil {
		return w
	}
	return writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.clear()
		return w.Write(b)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
