package kernel

import "strings"

// ShellQuote renders argv as a POSIX shell reads it back: each argument
// that is not made only of safe characters is put in single quotes.
func ShellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = quoteArg(a)
	}
	return strings.Join(out, " ")
}

func quoteArg(a string) string {
	if a == "" {
		return "''"
	}
	safe := true
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./:=,+@%", c)) {
			safe = false
			break
		}
	}
	if safe {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
}

// nsRef names a namespace as the target of `netns`: a lab's by its name,
// the host's (the one the commands run in) by the shell's own pid.
func nsRef(ns string) string {
	if ns == Host {
		return "$$"
	}
	return ns
}
