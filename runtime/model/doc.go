// Package model answers, once, what a lab consists of: State replays a
// journal's steps — or a plan's — into the lab's namespaces, its links
// (where each is after its moves, its peer, master and parent), and the
// step that made or last changed each. Undo planning, the runtime's
// ownership checks, check, inspect and graph all read the lab through it.
package model
