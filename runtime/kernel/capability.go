package kernel

// Capabilities some kernels have beyond Kernel, asked for with As.

// A Pather pins named namespaces in the filesystem: work that must enter a
// namespace (a ping, a capture, a DHCP exchange, a command) asks it where.
// The real kernel is one; a recording kernel, which has no namespaces to
// enter, is not.
type Pather interface {
	Path(ns string) string
}

// A LinkLister lists the links of a namespace, by name.
type LinkLister interface {
	Links(ns string) ([]LinkInfo, error)
}

// A View is a kernel whose namespaces, links, addresses, routes and
// neighbours can be read: what inspect and check compare a lab's journal
// with. The real kernel is one, and so is a recording kernel (its model).
type View interface {
	Kernel
	Observer
	NetnsInode(name string) (uint64, error) // the inode of the namespace pinned as name
	NetnsTag(name string) (string, error)   // its lo's alias
}

// A GroupDeleter deletes a lab's links in the host in one request (see
// Netlink.LinkDelGroup).
type GroupDeleter interface {
	LinkDelGroup(ns, tag string, names []string) (gone []string, err error)
}

// A NetnsPrechecker confirms, ahead of a teardown, the tags of the
// namespaces it deletes (see Netlink.PrecheckNetns).
type NetnsPrechecker interface {
	PrecheckNetns(names []string, inos, mnts []uint64, tags []string)
}

// A NetnsIdentifier reads what identifies a namespace pinned under a name
// (see Netlink.NetnsIdentity).
type NetnsIdentifier interface {
	NetnsIdentity(name string) (NetnsID, error)
}

// A SysctlScoper tells, before any change, whether a network namespace
// has a sysctl of its own that it may change (see Netlink.NetnsSysctl): an
// error wrapping fs.ErrPermission if it does not, nil if it does or if
// that cannot be told.
type SysctlScoper interface {
	NetnsSysctl(key string) error
}

// A Planner is a kernel whose answers are made up (a plan's): it is told
// when the run has been given one (Observe), and of what it would run but
// does not (Note).
type Planner interface {
	Observe()
	Note(cmd string)
}

// A Wrapper is a kernel around another, such as the claimer of package store.
type Wrapper interface {
	Unwrap() Kernel
}

// As finds in k, or in the kernels k wraps (see Wrapper), the first that
// has the capability T, as errors.As finds an error's type.
func As[T any](k Kernel) (T, bool) {
	for k != nil {
		if t, ok := k.(T); ok {
			return t, true
		}
		w, ok := k.(Wrapper)
		if !ok {
			break
		}
		k = w.Unwrap()
	}
	var none T
	return none, false
}
