// Package store keeps nsrun's labs on disk, under the state directory: each
// lab's record (a sealed lab.json, its lock and its journal), the claims on
// the global names its runs create, Recover (finishing the rollback of runs
// that died), Down (a lab's teardown), and gc (objects tagged as a lab's
// that no record holds). It returns what it did as a Result; the command
// line words it.
package store
