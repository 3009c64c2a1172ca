// Package data turns the data files a recipe reads (YAML and JSON) into
// Starlark values: mappings become dicts in the file's order, sequences
// lists, and scalars strings, ints, floats, booleans or None. Errors name
// the file and the line.
package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
	"go.yaml.in/yaml/v3"
)

// Exts are the file name extensions of the formats Decode reads.
var Exts = []string{".yaml", ".yml", ".json"}

// MaxValues bounds the values one file may expand to: YAML aliases can
// make a small file name a huge value (a "billion laughs").
const MaxValues = 1 << 20

// Decode decodes src, the data file at name, whose extension says its
// format (see Exts).
func Decode(name string, src []byte) (starlark.Value, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return decodeYAML(name, src)
	case ".json":
		return decodeJSON(name, src)
	}
	return nil, fmt.Errorf("%s: a data file is YAML (.yaml, .yml) or JSON (.json)", name)
}

// yamlLine is how yaml.v3 says where an error is.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

func decodeYAML(name string, src []byte) (starlark.Value, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // an empty file
			return starlark.None, nil
		}
		return nil, yamlError(name, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, fmt.Errorf("%s:%d: a second YAML document: load_data reads files of one", name, more.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	c := &converter{name: name}
	return c.value(&doc)
}

func yamlError(name string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], msg[len(m[0]):])
	}
	return fmt.Errorf("%s: %s", name, strings.TrimPrefix(msg, "yaml: "))
}

// decimal is a YAML integer in decimal, which yaml.v3 takes for a float
// when it does not fit in 64 bits.
var decimal = regexp.MustCompile(`^[-+]?[0-9]+$`)

type converter struct {
	name   string
	values int
}

func (c *converter) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", c.name, n.Line, fmt.Sprintf(format, args...))
}

func (c *converter) value(n *yaml.Node) (starlark.Value, error) {
	if c.values++; c.values > MaxValues {
		return nil, c.errorf(n, "the data expands to more than %d values (aliases of aliases?)", MaxValues)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return starlark.None, nil
		}
		return c.value(n.Content[0])
	case yaml.AliasNode:
		return c.value(n.Alias)
	case yaml.SequenceNode:
		elems := make([]starlark.Value, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := c.value(e)
			if err != nil {
				return nil, err
			}
			elems = append(elems, v)
		}
		return starlark.NewList(elems), nil
	case yaml.MappingNode:
		d := starlark.NewDict(len(n.Content) / 2)
		if err := c.mapping(d, n, true); err != nil {
			return nil, err
		}
		return d, nil
	case yaml.ScalarNode:
		return c.scalar(n)
	}
	return nil, c.errorf(n, "unexpected YAML node")
}

// mapping sets n's keys in d; a merge key (<<) takes the keys of the
// mappings it names that d does not have yet, and so do later keys of
// d's own over a merge's.
func (c *converter) mapping(d *starlark.Dict, n *yaml.Node, own bool) error {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		key, err := c.value(k)
		if err != nil {
			return err
		}
		if _, isDict := key.(*starlark.Dict); isDict {
			return c.errorf(k, "a mapping as a key")
		}
		if _, isList := key.(*starlark.List); isList {
			return c.errorf(k, "a sequence as a key")
		}
		if !own {
			if _, found, _ := d.Get(key); found {
				continue
			}
		}
		val, err := c.value(v)
		if err != nil {
			return err
		}
		if err := d.SetKey(key, val); err != nil {
			return c.errorf(k, "%v", err)
		}
	}
	for _, m := range merges {
		if m.Kind == yaml.AliasNode {
			m = m.Alias
		}
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, s := range srcs {
			if s.Kind == yaml.AliasNode {
				s = s.Alias
			}
			if s.Kind != yaml.MappingNode {
				return c.errorf(s, "a merge (<<) takes a mapping or a list of them")
			}
			if err := c.mapping(d, s, false); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *converter) scalar(n *yaml.Node) (starlark.Value, error) {
	switch n.ShortTag() {
	case "!!null":
		return starlark.None, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, c.errorf(n, "%v", err)
		}
		return starlark.Bool(b), nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return starlark.MakeInt64(i), nil
		}
		b, ok := new(big.Int).SetString(strings.ReplaceAll(n.Value, "_", ""), 0)
		if !ok {
			return nil, c.errorf(n, "%q is not an integer", n.Value)
		}
		return starlark.MakeBigInt(b), nil
	case "!!float":
		if decimal.MatchString(n.Value) { // an integer too big for int64
			b, _ := new(big.Int).SetString(n.Value, 10)
			return starlark.MakeBigInt(b), nil
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, c.errorf(n, "%v", err)
		}
		return starlark.Float(f), nil
	case "!!str", "!!timestamp", "!!binary":
		return starlark.String(n.Value), nil
	}
	return nil, c.errorf(n, "the tag %s is not one load_data reads (strings, numbers, booleans, null, lists, mappings)", n.Tag)
}

// decodeJSON decodes a JSON file, objects as dicts in the file's order.
func decodeJSON(name string, src []byte) (starlark.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	j := &jsonReader{name: name, src: src, dec: dec}
	v, err := j.value()
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, j.errorf("more after the end of the first value")
	}
	return v, nil
}

type jsonReader struct {
	name string
	src  []byte
	dec  *json.Decoder
}

// line is the line of the decoder's offset in the file.
func (j *jsonReader) line(offset int64) int {
	return 1 + bytes.Count(j.src[:min(int(offset), len(j.src))], []byte("\n"))
}

func (j *jsonReader) errorf(format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", j.name, j.line(j.dec.InputOffset()), fmt.Sprintf(format, args...))
}

func (j *jsonReader) fail(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("%s:%d: %s", j.name, j.line(syn.Offset), syn)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s:%d: unexpected end of the file", j.name, j.line(int64(len(j.src))))
	}
	return j.errorf("%v", err)
}

func (j *jsonReader) value() (starlark.Value, error) {
	tok, err := j.dec.Token()
	if err != nil {
		return nil, j.fail(err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			d := starlark.NewDict(0)
			for j.dec.More() {
				k, err := j.dec.Token()
				if err != nil {
					return nil, j.fail(err)
				}
				v, err := j.value()
				if err != nil {
					return nil, err
				}
				if err := d.SetKey(starlark.String(k.(string)), v); err != nil {
					return nil, j.errorf("%v", err)
				}
			}
			_, err := j.dec.Token()
			return d, j.failIf(err)
		case '[':
			var elems []starlark.Value
			for j.dec.More() {
				v, err := j.value()
				if err != nil {
					return nil, err
				}
				elems = append(elems, v)
			}
			_, err := j.dec.Token()
			return starlark.NewList(elems), j.failIf(err)
		}
		return nil, j.errorf("unexpected %q", t)
	case string:
		return starlark.String(t), nil
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return starlark.MakeInt64(i), nil
		}
		if b, ok := new(big.Int).SetString(string(t), 10); ok {
			return starlark.MakeBigInt(b), nil
		}
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil {
			return nil, j.errorf("%s is out of range", t)
		}
		return starlark.Float(f), nil
	case bool:
		return starlark.Bool(t), nil
	case nil:
		return starlark.None, nil
	}
	return nil, j.errorf("unexpected %v", tok)
}

func (j *jsonReader) failIf(err error) error {
	if err != nil {
		return j.fail(err)
	}
	return nil
}
