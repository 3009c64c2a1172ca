package words

import (
	"fmt"
	"strings"
)

// Plural renders a count of things for a person: "1 change", "3 changes",
// "2 addresses", "0 processes". It is the one pluralizer of nsrun's
// messages, the engine's and the command line's.
func Plural(n int, thing string) string {
	switch {
	case n == 1:
		return "1 " + thing
	case strings.HasSuffix(thing, "s"):
		return fmt.Sprintf("%d %ses", n, thing)
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
