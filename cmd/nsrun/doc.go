// Command nsrun runs network recipes: Starlark programs that build Linux
// network topologies in network namespaces, and roll them back.
package main
