// Package nsexec is the only package of nsrun that locks OS threads, enters
// a namespace or re-executes the binary as a helper in one. Everything else
// names a namespace by its path and asks this package to do the work there
// (package sandbox makes a fresh namespace for a whole run, by re-executing
// nsrun in it).
package nsexec
