package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/store"
	"golang.org/x/sys/unix"
)

// stopSignals ask nsrun to stop: Ctrl-C, kill, and a terminal that closed
// (SIGHUP). A run stops and rolls back; an undo under way (a rollback,
// `down`, `recover`) finishes first: half an undo is the worst place to stop.
// A signal nsrun was started with ignored (nohup, a background job's
// SIGINT) stays ignored: catching it would undo what nohup asked for.
var stopSignals = notIgnored(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

func notIgnored(sigs ...os.Signal) []os.Signal {
	var caught []os.Signal
	for _, s := range sigs {
		if !signal.Ignored(s) {
			caught = append(caught, s)
		}
	}
	return caught
}

// survivePipes keeps nsrun alive when what reads its output goes away (a
// closed terminal, `| head`): Go ends a program that writes to a broken
// pipe on stdout or stderr unless SIGPIPE is handled; handled, the write
// fails with EPIPE, as it does on a terminal that hung up (EIO), and
// nothing nsrun prints is worth stopping an undo for. Programs nsrun starts
// get SIGPIPE's default back when they exec.
func survivePipes() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// catcher catches the stop signals until release: the first cancels its
// context, with "interrupted by SIGNAL" as the cause; the others are
// absorbed.
type catcher struct {
	ctx     context.Context
	release func()

	mu    sync.Mutex
	first os.Signal
}

func catch() *catcher {
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &catcher{ctx: ctx}
	sigs := make(chan os.Signal, 4)
	if len(stopSignals) > 0 { // none would be all
		signal.Notify(sigs, stopSignals...)
	}
	got := func(s os.Signal) {
		c.mu.Lock()
		if c.first == nil {
			c.first = s
		}
		c.mu.Unlock()
		cancel(fmt.Errorf("interrupted by %s", signalName(s)))
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case s := <-sigs:
				got(s)
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	c.release = func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			<-exited
			for len(sigs) > 0 { // delivered before the stop, not yet seen
				got(<-sigs)
			}
			cancel(nil)
		})
	}
	return c
}

// signalled returns the cause of the first stop signal caught, or nil.
func (c *catcher) signalled() error { return context.Cause(c.ctx) }

// signal returns the first stop signal caught, or nil.
func (c *catcher) signal() os.Signal {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

// interruptible returns a context cancelled by the first stop signal, with
// "interrupted by SIGNAL" as its cause. Later signals are absorbed until
// the returned stop is called: a rollback, once started, finishes.
func interruptible() (context.Context, func()) {
	c := catch()
	return c.ctx, c.release
}

// undoing runs an undo (fn) with the stop signals held off until it is
// done, and returns the first that came meanwhile, or nil.
func undoing(fn func()) os.Signal {
	c := catch()
	fn()
	c.release()
	return c.signal()
}

// recoverDead finishes the rollback of labs whose runs died, as every
// command does first, tells w of it, with the stop signals held off until
// it is done; one that came meanwhile is then delivered again, to end
// nsrun as it would have before anything else.
func recoverDead(k kernel.Kernel, w io.Writer) {
	var recovered []store.Result
	sig := undoing(func() { recovered = store.Recover(store.StateDir, k) })
	printRecovered(w, recovered...)
	if sig != nil {
		redeliver(sig)
	}
}

// redeliver sends the process sig again, once nothing catches it: Go's
// default for the stop signals ends the program, as killed by sig.
func redeliver(sig os.Signal) {
	signal.Reset(sig)
	syscall.Kill(os.Getpid(), sig.(syscall.Signal))
	time.Sleep(time.Second) // it is on its way
	os.Exit(128 + int(sig.(syscall.Signal)))
}

// signalName names a signal as kill(1) does: SIGINT, SIGTERM, SIGHUP.
func signalName(s os.Signal) string {
	if sig, ok := s.(syscall.Signal); ok {
		if name := unix.SignalName(sig); name != "" {
			return name
		}
	}
	return s.String()
}
