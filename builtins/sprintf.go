package builtins

import (
	"fmt"
	"math/big"
	"strings"

	"go.starlark.net/starlark"
)

// sprintf(format, *args) formats as C's printf does, which Starlark's %
// operator does not: flags (- + 0 space #), a width and a precision, e.g.
// sprintf("%-20s %8.2f", name, rate). Verbs: s (str), r (repr), d, x, X,
// o, b (integers), f, e, E, g, G (numbers), c (a code point) and %%.
func sprintf(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(kwargs) > 0 {
		return nil, fmt.Errorf("%s: unexpected keyword argument %s", b.Name(), kwargs[0][0])
	}
	if len(args) < 1 {
		return nil, fmt.Errorf("%s: missing argument for format", b.Name())
	}
	format, ok := starlark.AsString(args[0])
	if !ok {
		return nil, fmt.Errorf("%s: format is a string, not %s", b.Name(), args[0].Type())
	}
	s, err := formatValues(format, args[1:])
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return starlark.String(s), nil
}

func formatValues(format string, args starlark.Tuple) (string, error) {
	var out strings.Builder
	next := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			out.WriteByte(c)
			continue
		}
		j := i + 1
		for j < len(format) && strings.IndexByte("-+# 0", format[j]) >= 0 {
			j++
		}
		for j < len(format) && format[j] >= '0' && format[j] <= '9' {
			j++
		}
		if j < len(format) && format[j] == '.' {
			j++
			for j < len(format) && format[j] >= '0' && format[j] <= '9' {
				j++
			}
		}
		if j >= len(format) {
			return "", fmt.Errorf("%q ends in an incomplete verb", format)
		}
		spec, verb := format[i:j], format[j]
		i = j
		if verb == '%' {
			out.WriteByte('%')
			continue
		}
		if next >= len(args) {
			return "", fmt.Errorf("not enough arguments for %q", format)
		}
		arg := args[next]
		next++
		v, err := goValue(verb, arg)
		if err != nil {
			return "", fmt.Errorf("%s%c: %v", spec, verb, err)
		}
		if verb == 'r' {
			verb = 's'
		}
		fmt.Fprintf(&out, spec+string(verb), v)
	}
	if next < len(args) {
		return "", fmt.Errorf("%d arguments for %q, which takes %d", len(args), format, next)
	}
	return out.String(), nil
}

// goValue is the Go value fmt formats for verb from a Starlark value.
func goValue(verb byte, v starlark.Value) (any, error) {
	switch verb {
	case 's':
		if s, ok := starlark.AsString(v); ok {
			return s, nil
		}
		return v.String(), nil
	case 'r':
		return v.String(), nil
	case 'd', 'x', 'X', 'o', 'b', 'c':
		i, ok := v.(starlark.Int)
		if !ok {
			if verb == 'x' || verb == 'X' {
				if s, isStr := starlark.AsString(v); isStr {
					return s, nil // hex of the bytes, as Go's %x
				}
			}
			return nil, fmt.Errorf("an int, not %s", v.Type())
		}
		if verb == 'c' {
			n, ok := i.Int64()
			if !ok {
				return nil, fmt.Errorf("%s is not a code point", i)
			}
			return rune(n), nil
		}
		if n, ok := i.Int64(); ok {
			return n, nil
		}
		return i.BigInt(), nil
	case 'f', 'F', 'e', 'E', 'g', 'G':
		switch x := v.(type) {
		case starlark.Float:
			return float64(x), nil
		case starlark.Int:
			f, _ := new(big.Float).SetInt(x.BigInt()).Float64()
			return f, nil
		}
		return nil, fmt.Errorf("a number, not %s", v.Type())
	}
	return nil, fmt.Errorf("unknown verb %%%c", verb)
}
