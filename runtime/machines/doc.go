// Package machines runs a lab across machines: one recipe whose
// namespaces are placed on several hosts (machine(), netns(on=)). The
// coordinating nsrun reaches each machine with OpenSSH's ssh and runs
// nsrun there (the internal command "part"), which makes that machine's
// part of the lab with its own journal, rollback and ownership checks;
// every part runs the whole recipe, making only its own objects, and the
// parts meet at each observation (see engine.Across).
//
// The coordinator journals each part (op "part") before the part changes
// anything; undoing it tears the part down on its machine. A part that
// loses its coordinator — the connection closed, or no word for the
// lab's lease — rolls itself back: the coordinator renews the lease while
// it runs, as NetworkManager's checkpoint timer is renewed.
package machines
