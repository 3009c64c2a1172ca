package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Claims live in one file, all or none a call; a live lab's claim is
// refused to another, a gone lab's taken over; an earlier version's claim
// file is honoured; the file goes with the last claim.
func TestClaimsFile(t *testing.T) {
	dir := t.TempDir()
	live := func(lab string) {
		if err := os.MkdirAll(filepath.Join(dir, lab), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, lab, "lab.json"), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	live("a")
	live("b")
	if err := Claim(dir, "a", []string{"netns:x", "link:y"}); err != nil {
		t.Fatal(err)
	}
	if got := ClaimOwner(dir, "netns:x"); got != "a" {
		t.Errorf("netns:x held by %q", got)
	}
	err := Claim(dir, "b", []string{"netns:z", "link:y"})
	if err == nil || !strings.Contains(err.Error(), `link name (host namespace) "y" is taken by lab "a"`) {
		t.Errorf("conflict: %v", err)
	}
	if got := ClaimOwner(dir, "netns:z"); got != "" {
		t.Errorf("a refused Claim left netns:z to %q: all or none", got)
	}
	// An earlier version's claim file, of a live lab, then of a gone one.
	if err := os.WriteFile(claimPath(dir, "netns:old"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Claim(dir, "a", []string{"netns:old"}); err == nil {
		t.Errorf("an earlier version's claim of a live lab was taken")
	}
	os.RemoveAll(filepath.Join(dir, "b"))
	if err := Claim(dir, "a", []string{"netns:old"}); err != nil {
		t.Errorf("a gone lab's claim was not taken over: %v", err)
	}
	if _, err := os.Stat(claimPath(dir, "netns:old")); err == nil {
		t.Errorf("the stale claim file is still there")
	}
	Release(dir, "b", []string{"netns:x"}) // not b's
	if got := ClaimOwner(dir, "netns:x"); got != "a" {
		t.Errorf("another lab's release took a's claim: %q", got)
	}
	Release(dir, "a", []string{"netns:x", "link:y", "netns:old"})
	if _, err := os.Stat(filepath.Join(dir, claimsFile)); !os.IsNotExist(err) {
		t.Errorf("the claims file outlives the last claim: %v", err)
	}
}
