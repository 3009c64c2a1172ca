package words

import (
	"testing"
)

// One pluralizer for every message (it was two: run.go's plural, which
// knew no "-es", and view's check count).
func TestPlural(t *testing.T) {
	for _, c := range []struct {
		n     int
		thing string
		want  string
	}{
		{1, "change", "1 change"},
		{0, "change", "0 changes"},
		{3, "record", "3 records"},
		{2, "address", "2 addresses"},
		{1, "process", "1 process"},
		{5, "process", "5 processes"},
		{4, "namespace", "4 namespaces"},
	} {
		if got := Plural(c.n, c.thing); got != c.want {
			t.Errorf("Plural(%d, %q) = %q, want %q", c.n, c.thing, got, c.want)
		}
	}
}
