package main

import (
	"sort"
	"strings"
	"unicode"

	"github.com/nsrun/nsrun/runtime/engine"
	"go.starlark.net/starlark"
)

// completer completes, at the cursor: inside a string literal, the lab's
// namespace names (after `.link(`, its link names); after `x.` (a dotted
// chain of names), the attributes of x's value in the session's globals;
// otherwise the globals, builtins, predeclared modules and Starlark's own
// names. Nothing is evaluated but attribute lookups.
type completer struct{ s *engine.Session }

func (c *completer) Do(line []rune, pos int) ([][]rune, int) {
	prefix, names := c.candidates(string(line[:pos]))
	var out [][]rune
	seen := map[string]bool{}
	for _, n := range names {
		if strings.HasPrefix(n, prefix) && !seen[n] {
			seen[n] = true
			out = append(out, []rune(n[len(prefix):]))
		}
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i]) < string(out[j]) })
	return out, len([]rune(prefix))
}

// candidates returns the word being completed and the names it may become.
func (c *completer) candidates(text string) (string, []string) {
	if quote, ok := openString(text); ok {
		prefix := text[quote+1:]
		netns, links := c.s.Names()
		if call, ok := strings.CutSuffix(strings.TrimRight(text[:quote], " "), ".link("); ok {
			// The links of the namespace whose link() this is, if it can
			// be told; else every link of the lab.
			if ns, ok := c.netnsOf(call); ok {
				return prefix, c.s.LinksIn(ns)
			}
			return prefix, links
		}
		return prefix, netns
	}
	word := trailingName(text)
	if dot := strings.LastIndexByte(word, '.'); dot >= 0 {
		v := c.lookup(word[:dot])
		if v == nil {
			return word[dot+1:], nil
		}
		return word[dot+1:], v.AttrNames()
	}
	var names []string
	for _, d := range []starlark.StringDict{c.s.Globals, c.s.Predeclared(), starlark.Universe} {
		names = append(names, d.Keys()...)
	}
	return word, names
}

// netnsOf returns the name of the namespace that the expression ending
// text (a name, or a dotted chain) is, if it is one.
func (c *completer) netnsOf(text string) (string, bool) {
	v := c.lookup(trailingName(text))
	if v == nil || v.Type() != "netns" {
		return "", false
	}
	name, err := v.Attr("name")
	if err != nil {
		return "", false
	}
	s, ok := starlark.AsString(name)
	return s, ok
}

// trailingName returns the name, or dotted chain of names, that text ends
// with.
func trailingName(text string) string {
	start := len(text)
	for start > 0 {
		r := rune(text[start-1])
		if r != '_' && r != '.' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			break
		}
		start--
	}
	return text[start:]
}

// lookup resolves a dotted chain of names (a, a.b) to a value with
// attributes, or nil.
func (c *completer) lookup(chain string) starlark.HasAttrs {
	parts := strings.Split(chain, ".")
	v, ok := c.s.Globals[parts[0]]
	if !ok {
		v = c.s.Predeclared()[parts[0]]
	}
	for _, p := range parts[1:] {
		h, ok := v.(starlark.HasAttrs)
		if !ok {
			return nil
		}
		if v, _ = h.Attr(p); v == nil {
			return nil
		}
	}
	h, _ := v.(starlark.HasAttrs)
	return h
}

// openString reports whether text ends inside a string literal, and where
// its opening quote is.
func openString(text string) (int, bool) {
	open, quote := -1, byte(0)
	for i := 0; i < len(text); i++ {
		ch := text[i]
		switch {
		case open >= 0 && ch == '\\':
			i++
		case open >= 0 && ch == quote:
			open = -1
		case open < 0 && (ch == '"' || ch == '\''):
			open, quote = i, ch
		case open < 0 && ch == '#':
			return -1, false
		}
	}
	return open, open >= 0
}
