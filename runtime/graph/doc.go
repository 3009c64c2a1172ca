// Package graph draws a lab's topology: its namespaces as nodes, its bridges
// as switch nodes, and its links as edges labelled with their addresses, as
// Mermaid or Graphviz DOT. The drawing is deterministic: the same topology
// gives the same text, byte for byte.
package graph
