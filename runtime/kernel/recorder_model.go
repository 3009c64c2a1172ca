package kernel

import (
	"fmt"
	"slices"
)

// Namespaces lists the namespaces in the model, by name; the host
// namespace is not among them.
func (r *Recorder) Namespaces() []string {
	names := make([]string, 0, len(r.netns))
	for name := range r.netns {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// NetnsInode returns the inode the model gave namespace name.
func (r *Recorder) NetnsInode(name string) (uint64, error) {
	ino, ok := r.netns[name]
	if !ok {
		return 0, fmt.Errorf("netns %q: %w", name, ErrNotFound)
	}
	return ino, nil
}

// NetnsTag returns the tag of namespace name in the model (its lo's alias).
func (r *Recorder) NetnsTag(name string) (string, error) {
	lo, err := r.get(name, "lo")
	if err != nil {
		return "", err
	}
	return lo.Alias, nil
}

// Peer returns where the other end of the veth (ns, name) is in the model;
// ok is false for a link that is not a veth, or not in the model.
// Parent returns the parent of a stacked link (a macvlan, macvtap or vlan)
// of the model, and its mode (a vlan's id).
func (r *Recorder) Parent(ns, name string) (parentNS, parent, mode string, ok bool) {
	l, found := r.links[[2]string{ns, name}]
	if !found {
		return "", "", "", false
	}
	return l.parent[0], l.parent[1], l.mode, l.parent != [2]string{} // a vxlan has a mode without a parent
}

func (r *Recorder) Peer(ns, name string) (peerNS, peerName string, ok bool) {
	l, found := r.links[[2]string{ns, name}]
	if !found || l.peer == ([2]string{}) {
		return "", "", false
	}
	return l.peer[0], l.peer[1], true
}
