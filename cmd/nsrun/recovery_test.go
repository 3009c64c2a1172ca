package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// kill -9 in the middle of a 50-namespace recipe, then `nsrun recover`:
// the machine is back to what it was.
func TestKillNineThenRecover(t *testing.T) {
	nstest.Kernel(t)
	before := nstest.Snapshot(t)
	cmd := exec.Command(nsrunBin, "testdata/fifty.star")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once it is halfway: 25 of its namespaces exist.
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(nstest.NetnsDir)
		if len(entries) >= 25 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the recipe made only %d namespaces", len(entries))
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if entries, _ := os.ReadDir(nstest.NetnsDir); len(entries) >= 50 {
		t.Fatalf("the recipe finished before it was killed (%d namespaces)", len(entries))
	}
	if r := nsrun(t, "recover"); r.code != 0 || !strings.Contains(r.stdout, `recovered lab "fifty"`) {
		t.Fatalf("recover: %+v", r)
	}
	if after := nstest.Snapshot(t); after != before {
		t.Errorf("after recover:\n%s\nwant:\n%s", after, before)
	}
}

// A journal cut at any byte of its last record, as a kill in the middle of
// writing it would leave, still recovers cleanly: the machine is back to
// what it was.
func TestTornJournalRecovers(t *testing.T) {
	nstest.Kernel(t)
	recipe := write(t, "torn.star", "n = netns(\"torn\")\na, b = veth(\"torn0\", \"torn1\", peer_netns = n)\nbridge(\"torn-br\")\na.master(bridge(\"torn-br2\"))\n")
	before := nstest.Snapshot(t)
	lab := filepath.Join(nstest.StateDir, "torn")
	// The journal of a finished run, and where its last record starts.
	if r := nsrun(t, recipe); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	full, err := os.ReadFile(filepath.Join(lab, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	if r := nsrun(t, "down", "torn"); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	last := len(full) - (bytes.LastIndexByte(full[:len(full)-1], '\n') + 1) // the last record's length
	for back := last; back > 0; back-- {
		if r := nsrun(t, recipe); r.code != 0 {
			t.Fatalf("%d bytes short: run: %+v", back, r)
		}
		// As if the run had died while writing its last record.
		journal, _ := os.ReadFile(filepath.Join(lab, "journal"))
		cut := len(journal) - back
		info, _ := os.ReadFile(filepath.Join(lab, "lab.json"))
		os.WriteFile(filepath.Join(lab, "lab.json"), bytes.Replace(info, []byte(`"state": "up"`), []byte(`"state": "running"`), 1), 0o644)
		os.WriteFile(filepath.Join(lab, "journal"), journal[:cut], 0o644)
		if r := nsrun(t, "recover"); r.code != 0 {
			t.Fatalf("%d bytes short: recover: %+v", back, r)
		}
		if after := nstest.Snapshot(t); after != before {
			t.Fatalf("%d bytes short: left\n%s\nwant\n%s", back, after, before)
		}
	}
}
