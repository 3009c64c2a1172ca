// Package clab reads containerlab topology files (NAME.clab.yml) whose
// nodes are kind linux or bridge and turns each into a recipe: a node is a
// namespace named after it (a bridge node, a namespace holding a bridge of
// its name), a link a veth pair created in place, a node's exec lines
// commands run in it once every link is made. The recipe's statements sit
// on the lines of the file they come from, so an error names the file's
// line. What nsrun cannot honour (another kind, binds, ports, ...) is
// refused, with its line, before anything is made.
package clab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Is reports whether path names a containerlab topology file.
func Is(path string) bool {
	base := strings.ToLower(filepath.Base(path))
	return strings.HasSuffix(base, ".clab.yml") || strings.HasSuffix(base, ".clab.yaml")
}

// A Topology is a containerlab file turned into a recipe.
type Topology struct {
	Name     string   // the lab's name (the file's name:)
	Recipe   []byte   // Starlark, its statements on the lines they come from
	Warnings []string // what the recipe leaves out, each once
}

// Name returns the lab name of the topology file src at path (its name:),
// or "" if it has none that can be read.
func Name(src []byte) string {
	var doc struct {
		Name string `yaml:"name"`
	}
	if yaml.Unmarshal(src, &doc) != nil {
		return ""
	}
	return doc.Name
}

// Phases in which the recipe makes what the file says: every node, then
// every link, then each node's settings and exec lines, in file order.
const (
	phaseNode = iota
	phaseLink
	phaseExec
)

// translator builds the recipe: statements by line of the file.
type translator struct {
	file      string
	lines     map[int][]string // line -> statements
	last      int
	warnings  []string
	imageSaid bool
}

func (t *translator) errorf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return fmt.Errorf("%s:%d: %s", t.file, line, fmt.Sprintf(format, args...))
}

func (t *translator) warn(n *yaml.Node, format string, args ...any) {
	msg := fmt.Sprintf("%s:%d: %s", t.file, n.Line, fmt.Sprintf(format, args...))
	if !slices.Contains(t.warnings, msg) {
		t.warnings = append(t.warnings, msg)
	}
}

// at queues expr, a Starlark expression, to be evaluated in phase, on
// line n's line.
func (t *translator) at(n *yaml.Node, phase int, expr string) {
	t.lines[n.Line] = append(t.lines[n.Line], fmt.Sprintf("_q.append((%d, lambda: %s))", phase, expr))
	t.last = max(t.last, n.Line)
}

// Translate turns the topology file src at path into a recipe.
func Translate(path string, src []byte) (*Topology, error) {
	t := &translator{file: path, lines: map[int][]string{}}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: an empty topology file", path)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, t.errorf(&doc, "a topology file is a mapping (name:, topology:)")
	}
	root := doc.Content[0]
	var name string
	var topo *yaml.Node
	for k, v := range pairs(root) {
		switch k.Value {
		case "name":
			name = v.Value
		case "topology":
			topo = v
		case "mgmt":
			t.warn(k, "mgmt: skipped: nsrun's nodes have no management network")
		case "prefix":
			t.warn(k, "prefix: skipped: nodes are namespaces named after them (nsrun --prefix names them otherwise)")
		default:
			return nil, t.errorf(k, "%s: not a key of a topology file nsrun runs (name, topology, mgmt, prefix)", k.Value)
		}
	}
	if name == "" {
		return nil, t.errorf(root, "the topology has no name: (the lab's name)")
	}
	if topo == nil || topo.Kind != yaml.MappingNode {
		return nil, t.errorf(root, "the topology has no topology: with nodes: and links:")
	}
	var nodes, links *yaml.Node
	defaults := map[string]*yaml.Node{}
	kinds := map[string]map[string]*yaml.Node{}
	for k, v := range pairs(topo) {
		switch k.Value {
		case "nodes":
			nodes = v
		case "links":
			links = v
		case "defaults":
			for dk, dv := range pairs(v) {
				defaults[dk.Value] = dv
			}
		case "kinds":
			for kk, kv := range pairs(v) {
				kinds[kk.Value] = map[string]*yaml.Node{}
				for pk, pv := range pairs(kv) {
					kinds[kk.Value][pk.Value] = pv
				}
			}
		default:
			return nil, t.errorf(k, "topology.%s: not a key nsrun runs (nodes, links, defaults, kinds)", k.Value)
		}
	}
	if nodes == nil || nodes.Kind != yaml.MappingNode || len(nodes.Content) == 0 {
		return nil, t.errorf(topo, "the topology has no nodes")
	}
	kindOf := map[string]string{}
	for k, v := range pairs(nodes) {
		if err := t.node(k, v, defaults, kinds, kindOf); err != nil {
			return nil, err
		}
	}
	if links != nil {
		if links.Kind != yaml.SequenceNode {
			return nil, t.errorf(links, "links: is a list")
		}
		for _, l := range links.Content {
			if err := t.link(l, kindOf); err != nil {
				return nil, err
			}
		}
	}
	return &Topology{Name: name, Recipe: t.recipe(), Warnings: t.warnings}, nil
}

// pairs yields a mapping's keys and values (nothing for another node).
func pairs(n *yaml.Node) func(yield func(k, v *yaml.Node) bool) {
	return func(yield func(k, v *yaml.Node) bool) {
		if n == nil || n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !yield(n.Content[i], n.Content[i+1]) {
				return
			}
		}
	}
}

// setting is a node's setting: its own, else its kind's, else the
// defaults'.
func setting(key string, own map[string]*yaml.Node, kind map[string]*yaml.Node, defaults map[string]*yaml.Node) *yaml.Node {
	if v, ok := own[key]; ok {
		return v
	}
	if v, ok := kind[key]; ok {
		return v
	}
	return defaults[key]
}

func (t *translator) node(k, v *yaml.Node, defaults map[string]*yaml.Node, kinds map[string]map[string]*yaml.Node, kindOf map[string]string) error {
	name := k.Value
	own := map[string]*yaml.Node{}
	for pk, pv := range pairs(v) {
		own[pk.Value] = pv
	}
	if v.Kind != yaml.MappingNode && v.Tag != "!!null" {
		return t.errorf(v, "node %s: a node is a mapping (kind:, exec:, ...)", name)
	}
	kindNode := setting("kind", own, nil, defaults)
	if kindNode == nil {
		return t.errorf(k, "node %s has no kind: (nsrun runs linux and bridge nodes)", name)
	}
	kind := kindNode.Value
	if kind != "linux" && kind != "bridge" {
		return t.errorf(kindNode, "node %s: kind %q is not one nsrun runs: it runs linux and bridge nodes, as namespaces, without containers", name, kind)
	}
	kindOf[name] = kind
	byKind := kinds[kind]
	for _, key := range slices.Sorted(maps.Keys(own)) {
		switch key {
		case "kind", "exec", "env", "image", "labels", "group", "sysctls", "private":
		case "mgmt-ipv4", "mgmt-ipv6":
			t.warn(own[key], "%s: skipped: nsrun's nodes have no management network", key)
		default:
			return t.errorf(keyNode(v, key), "node %s: %s: not something nsrun honours for a node without a container (it takes kind, exec, env, sysctls, and private, nsrun's own; image is not used)", name, key)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(byKind)) {
		switch key {
		case "exec", "env", "image", "labels", "group", "sysctls", "private":
		default:
			return t.errorf(byKind[key], "kinds.%s.%s: not something nsrun honours for a node without a container", kind, key)
		}
	}
	if img := setting("image", own, byKind, defaults); img != nil && !t.imageSaid {
		t.warn(img, "image: not used: nodes are namespaces that share the machine's filesystem")
		t.imageSaid = true
	}
	q := strconv.Quote(name)
	// private: (nsrun's own key) directories of the node's own, for what
	// its exec lines write: the node shares the machine's filesystem.
	var private []string
	if p := setting("private", own, byKind, defaults); p != nil {
		if p.Kind != yaml.SequenceNode {
			return t.errorf(p, "node %s: private: is a list of absolute paths", name)
		}
		for _, d := range p.Content {
			private = append(private, strconv.Quote(d.Value))
		}
		if kind == "bridge" {
			return t.errorf(p, "node %s: a bridge node runs no commands: private: is a linux node's", name)
		}
	}
	if len(private) > 0 {
		t.at(k, phaseNode, fmt.Sprintf("_n.update([(%s, netns(%s, private = [%s]))])", q, q, strings.Join(private, ", ")))
	} else {
		t.at(k, phaseNode, fmt.Sprintf("_n.update([(%s, netns(%s))])", q, q))
	}
	if kind == "bridge" {
		t.at(k, phaseNode, fmt.Sprintf("_b.update([(%s, bridge(%s, netns = _n[%s]).up())])", q, q, q))
	}
	if s := setting("sysctls", own, byKind, defaults); s != nil {
		for sk, sv := range pairs(s) {
			t.at(sk, phaseExec, fmt.Sprintf("_n[%s].sysctl(%s, %s)", strconv.Quote(name), strconv.Quote(sk.Value), strconv.Quote(sv.Value)))
		}
	}
	var env [][2]string
	if e := setting("env", own, byKind, defaults); e != nil {
		for ek, ev := range pairs(e) {
			if !validEnvName(ek.Value) {
				return t.errorf(ek, "node %s: env: %q is not a variable name", name, ek.Value)
			}
			env = append(env, [2]string{ek.Value, ev.Value})
		}
	}
	if x := setting("exec", own, byKind, defaults); x != nil {
		if kind == "bridge" {
			return t.errorf(x, "node %s: a bridge node runs no commands", name)
		}
		if x.Kind != yaml.SequenceNode {
			return t.errorf(x, "node %s: exec: is a list of commands", name)
		}
		for _, line := range x.Content {
			// once: part of building the node, not run again by an apply
			// of a lab that ran it.
			t.at(line, phaseExec, fmt.Sprintf("exec_in(_n[%s], %s, once = True)", strconv.Quote(name), strconv.Quote(exports(env)+line.Value)))
		}
	}
	return nil
}

// keyNode is the key node of key in mapping m (for its line).
func keyNode(m *yaml.Node, key string) *yaml.Node {
	for k := range pairs(m) {
		if k.Value == key {
			return k
		}
	}
	return m
}

type endpoint struct {
	node, intf, mac string
	at              *yaml.Node
}

func (t *translator) link(l *yaml.Node, kindOf map[string]string) error {
	if l.Kind != yaml.MappingNode {
		return t.errorf(l, "a link is a mapping (endpoints:, mtu:)")
	}
	var ends []endpoint
	mtu := 0
	for k, v := range pairs(l) {
		switch k.Value {
		case "endpoints":
			if v.Kind != yaml.SequenceNode || len(v.Content) != 2 {
				return t.errorf(v, "a link has two endpoints")
			}
			for _, e := range v.Content {
				ep, err := t.endpoint(e)
				if err != nil {
					return err
				}
				ends = append(ends, ep)
			}
		case "mtu":
			n, err := strconv.Atoi(v.Value)
			if err != nil || n < 68 || n > 65535 {
				return t.errorf(v, "mtu: %q is not an MTU", v.Value)
			}
			mtu = n
		case "type":
			if v.Value != "veth" {
				return t.errorf(v, "a link of type %q: nsrun makes veth links", v.Value)
			}
		case "labels", "vars":
		default:
			return t.errorf(k, "link: %s: not something nsrun honours (it takes endpoints, mtu, type: veth)", k.Value)
		}
	}
	if len(ends) != 2 {
		return t.errorf(l, "a link has two endpoints")
	}
	for _, e := range ends {
		if e.node == "host" {
			continue
		}
		if _, ok := kindOf[e.node]; !ok {
			switch e.node {
			case "mgmt-net", "macvlan", "ovs-bridge":
				return t.errorf(e.at, "endpoint %s:%s: nsrun has no %s links (no management network, no macvlan or OVS endpoints)", e.node, e.intf, e.node)
			}
			return t.errorf(e.at, "endpoint %s:%s: no node %q in the topology", e.node, e.intf, e.node)
		}
	}
	// One expression on the link's line: the veth made, each end put in
	// its bridge (a bridge node's) and up.
	args := fmt.Sprintf("%s, %s, netns = _n[%s], peer_netns = _n[%s]",
		strconv.Quote(ends[0].intf), strconv.Quote(ends[1].intf), strconv.Quote(ends[0].node), strconv.Quote(ends[1].node))
	if ends[0].mac != "" {
		args += ", mac = " + strconv.Quote(ends[0].mac)
	}
	if ends[1].mac != "" {
		args += ", peer_mac = " + strconv.Quote(ends[1].mac)
	}
	if mtu > 0 {
		args += fmt.Sprintf(", mtu = %d", mtu)
	}
	var then []string
	for i, v := range []string{"x", "y"} {
		if kindOf[ends[i].node] == "bridge" {
			then = append(then, fmt.Sprintf("%s.master(_b[%s])", v, strconv.Quote(ends[i].node)))
		}
	}
	then = append(then, "x.up()", "y.up()")
	t.at(l, phaseLink, fmt.Sprintf("(lambda x, y: [%s])(*veth(%s))", strings.Join(then, ", "), args))
	return nil
}

// endpoint reads "node:interface", or the extended form {node, interface, mac}.
func (t *translator) endpoint(e *yaml.Node) (endpoint, error) {
	switch e.Kind {
	case yaml.ScalarNode:
		node, intf, ok := strings.Cut(e.Value, ":")
		if !ok || node == "" || intf == "" {
			return endpoint{}, t.errorf(e, "endpoint %q is not NODE:INTERFACE", e.Value)
		}
		return endpoint{node: node, intf: intf, at: e}, nil
	case yaml.MappingNode:
		ep := endpoint{at: e}
		for k, v := range pairs(e) {
			switch k.Value {
			case "node":
				ep.node = v.Value
			case "interface":
				ep.intf = v.Value
			case "mac":
				ep.mac = v.Value
			default:
				return endpoint{}, t.errorf(k, "endpoint: %s: not something nsrun honours (node, interface, mac)", k.Value)
			}
		}
		if ep.node == "" || ep.intf == "" {
			return endpoint{}, t.errorf(e, "an endpoint names its node and interface")
		}
		return ep, nil
	}
	return endpoint{}, t.errorf(e, "an endpoint is NODE:INTERFACE")
}

// exports is shell that exports env before a command.
func exports(env [][2]string) string {
	var b strings.Builder
	for _, kv := range env {
		fmt.Fprintf(&b, "export %s='%s'; ", kv[0], strings.ReplaceAll(kv[1], "'", `'\''`))
	}
	return b.String()
}

// validEnvName reports whether s is a shell variable's name.
func validEnvName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// tail does the queued work, after the file's lines, phase by phase.
const tail = `
for _phase in range(3):
    for _p, _f in _q:
        if _p == _phase:
            _f()
`

func (t *translator) recipe() []byte {
	var b strings.Builder
	// Line 1 starts the queue; every other line of the file holds what
	// comes from it.
	for line := 1; line <= t.last; line++ {
		var stmts []string
		if line == 1 {
			stmts = append(stmts, `_q = []`, `_n = {"host": host()}`, `_b = {}`)
		}
		stmts = append(stmts, t.lines[line]...)
		b.WriteString(strings.Join(stmts, "; "))
		b.WriteByte('\n')
	}
	if t.last == 0 {
		b.WriteString("_q = []; _n = {\"host\": host()}; _b = {}\n")
	}
	b.WriteString(tail)
	return []byte(b.String())
}
