// Package view reads a live lab against its record: Check reports where the
// kernel has drifted from what the journal says, Inspect shows what is there
// (namespaces, links, addresses, routes, neighbours, processes), and RunIn
// runs a command, or a shell, in one of the lab's namespaces. Nothing here
// changes the lab.
package view
