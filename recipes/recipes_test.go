package recipes_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nsrun/nsrun/builtins"
	"github.com/nsrun/nsrun/recipes"
	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/kernel"
	"github.com/nsrun/nsrun/runtime/nstest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) {
	nstest.MainWith(m, nstest.Binary("github.com/nsrun/nsrun/cmd/nsrun", &nsrunBin))
}

// Every walkthrough recipe passes its own checks on the real kernel and
// prints the report in testdata/NAME.golden, on every run.
func TestRecipes(t *testing.T) {
	paths, _ := filepath.Glob("*.star")
	if len(paths) < 5 {
		t.Fatalf("found %d recipes, want the five walkthroughs", len(paths))
	}
	for _, path := range paths {
		name := strings.TrimSuffix(path, ".star")
		t.Run(name, func(t *testing.T) {
			nstest.Kernel(t)
			got := run(t, path)
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s report mismatch (-want +got):\n%s", path, diff)
			}
			if again := run(t, path); again != got {
				t.Errorf("a second run printed something else:\n%s", cmp.Diff(got, again))
			}
		})
	}
}

// run runs a recipe as `nsrun --rm` does and returns what it printed.
func run(t *testing.T, path string) string {
	t.Helper()
	k := kernel.NewNetlink(nstest.NetnsDir)
	defer k.Close()
	var stdout, stderr bytes.Buffer
	r := engine.Run(context.Background(), engine.RunOptions{
		Recipe:   path,
		Remove:   true,
		StateDir: nstest.StateDir,
		Kernel:   k,
		Interp:   &engine.Interp{Predeclared: builtins.Predeclared(nil), Std: recipes.Std},
		Stdout:   &stdout,
		Stderr:   &stderr,
	})
	if r.Err != nil || len(r.Failed) > 0 {
		t.Fatalf("%s: %v; not undone: %v\n%s", path, r.Err, r.Failed, stderr.String())
	}
	return stdout.String()
}
