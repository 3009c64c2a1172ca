package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/machines"
	"github.com/nsrun/nsrun/runtime/store"
)

func init() {
	register(command{"part", "", "(internal) one machine's part of a lab across machines, driven over SSH by the coordinating nsrun", cmdPart})
}

// cmdPart is a machine's end of a lab across machines: the coordinating
// nsrun runs it over ssh and speaks to it on its standard input and
// output. It outlives its SSH session's signals: a part that loses its
// coordinator rolls back by itself (see package machines).
func cmdPart(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "nsrun part: takes no arguments (the coordinating nsrun runs it over ssh)")
		return engine.ExitUsage
	}
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	if err := os.MkdirAll(store.StateDir, 0o755); err != nil {
		fmt.Fprintf(stderr, "nsrun part: %v\n", err)
		return engine.ExitUsage
	}
	err := machines.Serve(os.Stdin, os.Stdout, version(), store.StateDir, func(ctx context.Context, b *machines.Bundle, recipe string, across engine.Across) store.Result {
		k := kernel.NewNetlink(store.NetnsDir)
		defer k.Close()
		return engine.Run(ctx, engine.RunOptions{
			Recipe: recipe, Args: b.Args, Lab: b.Lab, Prefix: b.Prefix,
			StateDir: store.StateDir, Kernel: k, Interp: newInterp(b.Args, nil),
			Stdout: io.Discard, Stderr: io.Discard, Quiet: true, MaxSteps: b.MaxSteps,
			Across: across,
		})
	})
	if err != nil {
		fmt.Fprintf(stderr, "nsrun part: %v\n", err)
		return engine.ExitFailed
	}
	return engine.ExitOK
}

// connector returns the RunOptions.Connect of a coordinating run: it
// bundles the recipe's directory and reaches the lab's machines; *coord
// is the coordinator, for the end of the run.
func connector(recipe string, args []string, lab, prefix string, lease time.Duration, coord **machines.Coordinator) func(context.Context, []journal.Step) (engine.Across, error) {
	return func(ctx context.Context, parts []journal.Step) (engine.Across, error) {
		b, err := bundle(recipe)
		if err != nil {
			return nil, err
		}
		b.Args, b.Lab, b.Prefix = args, lab, prefix
		if b.Lab == "" {
			b.Lab = engine.LabName(recipe)
			if prefix != "" {
				b.Lab = prefix + "-" + b.Lab
			}
		}
		c, err := machines.Start(ctx, parts, b, version(), lease)
		if err != nil {
			return nil, err
		}
		*coord = c
		return c, nil
	}
}

// Bounds of what a lab across machines sends each machine of its
// recipe's directory.
const (
	bundleFiles    = 2000
	bundleFileSize = 4 << 20
	bundleSize     = 32 << 20
)

// bundle is the recipe's directory, for the machines of a lab across
// machines: its files (but hidden ones and those too big), so that
// load(), load_data() and a command's configuration files find there
// what they find here.
func bundle(recipe string) (machines.Bundle, error) {
	dir, err := filepath.Abs(filepath.Dir(recipe))
	if err != nil {
		return machines.Bundle{}, err
	}
	b := machines.Bundle{Dir: dir, Recipe: filepath.Base(recipe), Files: map[string][]byte{}}
	total := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > bundleFileSize {
			return nil
		}
		if len(b.Files) >= bundleFiles || total+int(info.Size()) > bundleSize {
			return fmt.Errorf("the recipe's directory %s holds more than a lab across machines sends (%d files, %d MiB)", dir, bundleFiles, bundleSize>>20)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		b.Files[rel] = data
		total += len(data)
		return nil
	})
	return b, err
}
