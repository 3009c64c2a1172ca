package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/runtime/nstest"
)

// Every recipe of the hostile-input corpus, testdata/bad/*.star, is rejected
// with its file:line and leaves the kernel as it found it. Each first makes
// something valid and errs later, so that "no change at all" means the error
// was found before the first change (the libraries that cases load live in
// testdata/bad/lib/, outside the corpus).
//
// The lab is not sandboxed (the test runs in a sandbox of its own), so that
// the snapshots see what the run did.
func TestBadRecipes(t *testing.T) {
	nstest.Kernel(t)
	paths, err := filepath.Glob("testdata/bad/*.star")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no corpus in testdata/bad: %v", err)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".star")
		t.Run(name, func(t *testing.T) {
			c := readBadCase(t, path)
			before := nstest.Snapshot(t)
			r := nsrun(t, append(append([]string{"--name", "corpus"}, c.flags...), path)...)
			if r.code != c.exit {
				t.Errorf("exit %d, want %d", r.code, c.exit)
			}
			if !c.want.MatchString(r.stderr) {
				t.Errorf("stderr does not match %q", c.want)
			}
			pos := regexp.MustCompile(`(^|[\s/])` + regexp.QuoteMeta(filepath.Base(path)) + `:` + strconv.Itoa(c.line) + `:`)
			if !pos.MatchString(r.stderr) {
				t.Errorf("stderr does not name %s:%d:", filepath.Base(path), c.line)
			}
			if strings.Contains(r.stderr, "rolled back") {
				t.Errorf("the run changed the kernel before it found the error (and rolled back)")
			}
			if after := nstest.Snapshot(t); after != before {
				t.Errorf("the run left:\n%s\nwant:\n%s", after, before)
				nsrun(t, "down", "corpus") // so that the next case starts clean
			}
			if t.Failed() {
				t.Logf("stderr:\n%s", r.stderr)
			}
		})
	}
}

// badCase is what a corpus recipe's leading comments say to expect:
//
//	# want: REGEXP     the error message (required, on the first line)
//	# flags: FLAGS     more flags for nsrun run, e.g. --timeout 5s
//	# exit: N          the exit code, if not 2 (1: the recipe calls fail())
//	# line: N          the line of the error, if not the last line of code
type badCase struct {
	want  *regexp.Regexp
	flags []string
	exit  int
	line  int
}

var badHeader = regexp.MustCompile(`^# (want|flags|exit|line): (.*)$`)

func readBadCase(t *testing.T, path string) badCase {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(src), "\n"), "\n")
	if !strings.HasPrefix(lines[0], "# want: ") {
		t.Fatalf("%s: the first line is not a `# want: REGEXP` comment", path)
	}
	c := badCase{exit: 2}
	lastCode, headers := 0, true
	for i, line := range lines {
		if m := badHeader.FindStringSubmatch(line); headers && m != nil {
			if err := c.set(m[1], m[2]); err != nil {
				t.Fatalf("%s:%d: %v", path, i+1, err)
			}
			continue
		}
		headers = false
		if text := strings.TrimSpace(line); text != "" && !strings.HasPrefix(text, "#") {
			lastCode = i + 1
		}
	}
	if c.line == 0 {
		c.line = lastCode
	}
	return c
}

func (c *badCase) set(key, value string) (err error) {
	switch key {
	case "want":
		c.want, err = regexp.Compile(value)
	case "flags":
		c.flags = strings.Fields(value)
	case "exit":
		c.exit, err = strconv.Atoi(value)
	case "line": // a number, and maybe a note on why
		num, _, _ := strings.Cut(value, " ")
		c.line, err = strconv.Atoi(num)
	}
	return err
}
