package graph

import (
	"fmt"
	"io"
	"strings"
)

// Formats a graph is drawn in.
const (
	Mermaid = "mermaid"
	DOT     = "dot"
)

// Write draws g in format (Mermaid or DOT).
func (g *Graph) Write(w io.Writer, format string) error {
	switch format {
	case Mermaid:
		return g.writeMermaid(w)
	case DOT:
		return g.writeDOT(w)
	}
	return fmt.Errorf("unknown format %q (want %s or %s)", format, Mermaid, DOT)
}

// writeMermaid draws a Mermaid flowchart: namespaces as rounded boxes, the
// host as a box, bridges as hexagons.
func (g *Graph) writeMermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	if g.Partial != "" {
		fmt.Fprintf(&b, "  partial[/\"partial: %s\"/]\n", mermaidText(g.Partial))
	}
	g.eachGroup(func(machine string, nodes []Node) {
		indent := "  "
		if g.Machines != nil {
			fmt.Fprintf(&b, "  subgraph %s [\"%s\"]\n", machineID(machine), mermaidText("machine "+machine))
			indent = "    "
		}
		for _, n := range nodes {
			label := mermaidText(strings.Join(n.Label, "\n"))
			switch n.Kind {
			case KindBridge:
				fmt.Fprintf(&b, "%s%s{{\"%s\"}}\n", indent, n.ID, label)
			case KindHost:
				fmt.Fprintf(&b, "%s%s[\"%s\"]\n", indent, n.ID, label)
			default:
				fmt.Fprintf(&b, "%s%s(\"%s\")\n", indent, n.ID, label)
			}
		}
		if indent != "  " {
			b.WriteString("  end\n")
		}
	})
	for _, e := range g.Edges {
		switch {
		case e.Dashed:
			fmt.Fprintf(&b, "  %s -.- %s\n", e.From, e.To)
		default:
			fmt.Fprintf(&b, "  %s ---|\"%s\"| %s\n", e.From, mermaidText(e.Label), e.To)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// eachGroup calls fn with the nodes of each machine, in the order of
// g.Machines; for a lab on one machine, once with all of them.
func (g *Graph) eachGroup(fn func(machine string, nodes []Node)) {
	if g.Machines == nil {
		fn("", g.Nodes)
		return
	}
	for _, m := range g.Machines {
		var nodes []Node
		for _, n := range g.Nodes {
			if n.Machine == m {
				nodes = append(nodes, n)
			}
		}
		fn(m, nodes)
	}
}

// machineID is the ID of a machine's group of nodes.
func machineID(m string) string { return "machine_" + escape(m) }

// mermaidText escapes a label for a quoted Mermaid string: quotes and the
// characters Mermaid reads as markup become entity codes; lines are <br>.
func mermaidText(s string) string {
	r := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "#", "#35;", "|", "#124;", "\n", "<br>")
	return r.Replace(s)
}

// writeDOT draws an undirected Graphviz graph: namespaces as rounded boxes,
// the host as a box, bridges as hexagons.
func (g *Graph) writeDOT(w io.Writer) error {
	var b strings.Builder
	b.WriteString("graph nsrun {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n")
	if g.Partial != "" {
		fmt.Fprintf(&b, "  label=%s;\n  labelloc=t;\n", dotText("partial: "+g.Partial))
	}
	g.eachGroup(func(machine string, nodes []Node) {
		indent := "  "
		if g.Machines != nil {
			fmt.Fprintf(&b, "  subgraph cluster_%s {\n    label=%s;\n    style=dashed;\n", machineID(machine), dotText("machine "+machine))
			indent = "    "
		}
		for _, n := range nodes {
			shape := `shape=box, style=rounded`
			switch n.Kind {
			case KindBridge:
				shape = `shape=hexagon`
			case KindHost:
				shape = `shape=box`
			}
			fmt.Fprintf(&b, "%s%s [%s, label=%s];\n", indent, n.ID, shape, dotText(strings.Join(n.Label, "\n")))
		}
		if g.Machines != nil {
			b.WriteString("  }\n")
		}
	})
	for _, e := range g.Edges {
		if e.Dashed {
			fmt.Fprintf(&b, "  %s -- %s [style=dashed];\n", e.From, e.To)
			continue
		}
		fmt.Fprintf(&b, "  %s -- %s [label=%s];\n", e.From, e.To, dotText(e.Label))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// dotText quotes a DOT string: backslashes and quotes escaped, lines as \n.
func dotText(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
