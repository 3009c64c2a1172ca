package kernel

import (
	"cmp"
	"container/list"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nsrun/nsrun/runtime/nsexec"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netlink is the real kernel. It keeps what it opened for a namespace (its
// descriptor, a netlink socket of its own, the library's handle: opening
// one costs a setns round trip) while the namespace is among the
// openNetns it used last, and the index of each link it created or looked
// up, so that a change to a link is one request, not a lookup by name and
// then the change. What it keeps open does not grow with the lab.
type Netlink struct {
	Dir string // where named namespaces are pinned: /run/netns
	// OpenNetns is how many namespaces it keeps open at most; 0 is
	// openNetns.
	OpenNetns int

	mu       sync.Mutex
	handles  map[string]*netlink.Handle
	socks    map[string]*rtnl // our own sockets, for the hot path (rtnl.go)
	fds      map[string]netns.NsHandle
	inos     map[string]uint64 // the inode of each namespace first opened, to know it when opened again
	recent   *list.List        // the namespaces with something open, the last used first
	inRecent map[string]*list.Element
	index    map[linkKey]int
	verified map[string]uint64 // namespaces whose tag PrecheckNetns found, by inode
	scopes   map[string]error  // what NetnsSysctl found, by key
}

// openNetns is how many namespaces Netlink keeps open at most: three
// descriptors each (see Netlink), far below a process's usual limit,
// however large the lab. A namespace is closed once this many others were
// used since it last was: the two goroutines of a pipelined run use it for
// one request at a time, so it is never closed while in use.
const openNetns = 1024

type linkKey struct{ ns, name string }

// NewNetlink returns the real kernel, with namespaces pinned in dir.
func NewNetlink(dir string) *Netlink {
	k := &Netlink{Dir: dir, handles: map[string]*netlink.Handle{}, socks: map[string]*rtnl{}, fds: map[string]netns.NsHandle{},
		inos: map[string]uint64{}, recent: list.New(), inRecent: map[string]*list.Element{},
		index: map[linkKey]int{}, verified: map[string]uint64{}, scopes: map[string]error{}}
	// The host's descriptor is opened now, while every thread of the
	// process is at home: /proc/self/ns/net follows the main thread.
	k.fd(Host)
	return k
}

// loIndex is lo's index in every network namespace.
const loIndex = 1

func (k *Netlink) path(ns string) string {
	if ns == Host {
		return ""
	}
	return filepath.Join(k.Dir, ns)
}

// fd returns an open descriptor of the namespace, cached.
func (k *Netlink) fd(ns string) (netns.NsHandle, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.used(ns)
	if fd, ok := k.fds[ns]; ok {
		return fd, nil
	}
	var fd netns.NsHandle
	var err error
	if ns == Host {
		fd, err = netns.GetFromPath("/proc/self/ns/net")
	} else {
		fd, err = netns.GetFromPath(k.path(ns))
	}
	if errors.Is(err, os.ErrNotExist) {
		return -1, fmt.Errorf("netns %q: %w", NSArg(ns), ErrNotFound)
	}
	if err != nil {
		return -1, fmt.Errorf("opening netns %q: %w", NSArg(ns), err)
	}
	// Opened again after it was closed (see openNetns): it must be the
	// namespace it was, not one put under its name since.
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		fd.Close()
		return -1, fmt.Errorf("opening netns %q: %w", NSArg(ns), err)
	}
	if was, ok := k.inos[ns]; ok && was != st.Ino {
		fd.Close()
		return -1, fmt.Errorf("netns %q is not the one this run opened: another was put under its name since: %w", NSArg(ns), ErrNotOurs)
	}
	k.inos[ns] = st.Ino
	k.fds[ns] = fd
	return fd, nil
}

// h returns the namespace's netlink handle, made on first use.
func (k *Netlink) h(ns string) (*netlink.Handle, error) {
	k.mu.Lock()
	k.used(ns)
	h, ok := k.handles[ns]
	k.mu.Unlock()
	if ok {
		return h, nil
	}
	var err error
	if ns == Host {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		var fd netns.NsHandle
		if fd, err = k.fd(ns); err != nil {
			return nil, err
		}
		h, err = netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink handle for netns %q: %w", NSArg(ns), err)
	}
	k.mu.Lock()
	k.handles[ns] = h
	k.mu.Unlock()
	return h, nil
}

// forget closes what the kernel keeps open for ns, and forgets all it knew
// of it: an open handle would keep a deleted namespace alive.
func (k *Netlink) forget(ns string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closeNetns(ns)
	delete(k.inos, ns)
	for key := range k.index {
		if key.ns == ns {
			delete(k.index, key)
		}
	}
}

// closeNetns closes what is open for ns (k.mu held); what is known of it
// stays.
func (k *Netlink) closeNetns(ns string) {
	if h, ok := k.handles[ns]; ok {
		h.Close()
		delete(k.handles, ns)
	}
	if s, ok := k.socks[ns]; ok {
		s.Close()
		delete(k.socks, ns)
	}
	if fd, ok := k.fds[ns]; ok {
		fd.Close()
		delete(k.fds, ns)
	}
	if e, ok := k.inRecent[ns]; ok {
		k.recent.Remove(e)
		delete(k.inRecent, ns)
	}
}

// used marks ns as the namespace used last (k.mu held), and closes the one
// used least recently if more than openNetns are open. The host's stays.
func (k *Netlink) used(ns string) {
	if ns == Host {
		return
	}
	if e, ok := k.inRecent[ns]; ok {
		k.recent.MoveToFront(e)
		return
	}
	k.inRecent[ns] = k.recent.PushFront(ns)
	for k.recent.Len() > cmp.Or(k.OpenNetns, openNetns) {
		k.closeNetns(k.recent.Back().Value.(string))
	}
}

func (k *Netlink) rememberLink(ns, name string, index int) {
	k.mu.Lock()
	k.index[linkKey{ns, name}] = index
	k.mu.Unlock()
}

func (k *Netlink) forgetLink(ns, name string) {
	k.mu.Lock()
	delete(k.index, linkKey{ns, name})
	k.mu.Unlock()
}

func (k *Netlink) cachedIndex(ns, name string) (int, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i, ok := k.index[linkKey{ns, name}]
	return i, ok
}

// Close releases every handle.
func (k *Netlink) Close() error {
	k.mu.Lock()
	names := make([]string, 0, len(k.handles)+len(k.fds))
	for ns := range k.handles {
		names = append(names, ns)
	}
	for ns := range k.fds {
		names = append(names, ns)
	}
	k.mu.Unlock()
	for _, ns := range names {
		k.forget(ns)
	}
	return nil
}

func (k *Netlink) NetnsAdd(spec NetnsSpec) (NetnsID, error) {
	name := spec.Name
	var sock *rtnl
	ino, pin, fd, err := nsexec.NewNamed(k.Dir, name, func() error {
		// On the new namespace's thread: the sockets are opened here, in
		// it, and serve the namespace for the rest of the run.
		if spec.NoIPv6 {
			if err := disableIPv6(); err != nil {
				return err
			}
		}
		var err error
		if sock, err = openRtnl(); err != nil {
			return err
		}
		var up *bool
		if spec.LoUp {
			up = &spec.LoUp
		}
		_, err = sock.do(setLinkRequest(loIndex, &spec.Tag, up), 0)
		return err
	})
	if err != nil {
		if sock != nil {
			sock.Close()
		}
		return NetnsID{}, err
	}
	k.keepSock(name, sock)
	k.mu.Lock()
	if old, ok := k.handles[name]; ok { // a handle to a namespace of that name deleted meanwhile
		old.Close()
		delete(k.handles, name)
	}
	if old, ok := k.fds[name]; ok {
		old.Close()
	}
	k.used(name)
	k.fds[name] = netns.NsHandle(fd) // kept: a veth's peer is put in it by this descriptor
	k.inos[name] = ino
	k.index[linkKey{name, "lo"}] = loIndex
	k.mu.Unlock()
	return NetnsID{Ino: ino, Mnt: nsexec.MountID(k.path(name)), Pin: pin}, nil
}

// disableIPv6 turns IPv6 off in the calling thread's namespace. A kernel
// without IPv6 has it off already.
//
// Equivalent to: sysctl -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
func disableIPv6() error {
	for _, key := range []string{ipv6Off, ipv6OffDefault} {
		err := os.WriteFile(sysctlPath(key), []byte("1"), 0o644)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("turning IPv6 off: %w", err)
		}
	}
	return nil
}

func (k *Netlink) NetnsDel(name, tag string, id NetnsID) error {
	k.forget(name)
	path := k.path(name)
	if pin, ok := nsexec.PinFile(path); ok {
		// A pin no namespace is bound to. It is the lab's if the run
		// died between making it and binding the namespace (the
		// namespace never known made), or if a deletion was cut short
		// between the unmount and the unlink (the very file the lab made).
		if id.Ino == 0 || (id.Pin != 0 && pin == id.Pin) {
			return nsexec.RemovePin(path)
		}
		return fmt.Errorf("netns %q is an empty pin the lab did not make: %w", name, ErrNotOurs)
	}
	if tag == "" {
		return fmt.Errorf("netns %q: no tag to check it by: %w", name, ErrNotOurs)
	}
	// The pin's mount, if it is the very one the lab made (its unique id
	// is never handed out again), binds the lab's namespace: no netlink
	// request is needed, and none is made in the namespace, whose cleanup
	// a socket opened there holds back until the socket is freed (an RCU
	// grace period later: about 10 ms here, for a one-host lab's down).
	ours := id.Ino != 0 && id.Mnt != 0 && nsexec.MountID(path) == id.Mnt
	k.mu.Lock()
	checked := ours || id.Ino != 0 && k.verified[name] == id.Ino
	delete(k.verified, name)
	k.mu.Unlock()
	if checked {
		return nsexec.DeleteNamed(k.Dir, name, id.Ino)
	}
	// The inode alone is not enough: the kernel hands a freed namespace's
	// inode number out again. The tag on lo is checked as well.
	got, err := k.loAlias(name)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: pinned, but not a namespace
		return err
	}
	if got != tag {
		return fmt.Errorf("netns %q carries tag %q, not %q: %w", name, got, tag, ErrNotOurs)
	}
	ino := id.Ino
	if ino == 0 {
		if ino, err = nsexec.Inode(path); err != nil {
			return err
		}
	}
	return nsexec.DeleteNamed(k.Dir, name, ino)
}

// PrecheckNetns checks, ahead of a teardown, that the namespaces about to be
// deleted still carry the lab's tags, so that NetnsDel, which still checks
// each inode, need not ask the kernel again. Reading a tag is a netlink
// request the kernel serialises with the cleanup of namespaces deleted
// before: asked between deletions, each waits for that cleanup. Those it
// cannot confirm are checked again by NetnsDel.
//
// A pin whose unique mount id is the one recorded when it was made is the
// lab's own pin, of the lab's namespace: that needs no netlink at all.
func (k *Netlink) PrecheckNetns(names []string, inos, mnts []uint64, tags []string) {
	for i, name := range names {
		path := k.path(name)
		if ino, err := nsexec.Inode(path); err != nil || inos[i] == 0 || ino != inos[i] {
			continue
		}
		if mnts[i] == 0 || nsexec.MountID(path) != mnts[i] {
			if got, err := k.loAlias(name); err != nil || got != tags[i] {
				continue
			}
		}
		k.mu.Lock()
		k.verified[name] = inos[i]
		k.mu.Unlock()
	}
}

// loAlias reads the tag of namespace name's lo; a name that is pinned but
// not yet a namespace (a run died between the two) has none.
func (k *Netlink) loAlias(name string) (string, error) {
	var alias string
	err := nsexec.Do(k.path(name), func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		alias = lo.Attrs().Alias
		return nil
	})
	return alias, err
}

// NetnsNames lists the namespaces pinned in the kernel's directory.
func (k *Netlink) NetnsNames() ([]string, error) {
	entries, err := os.ReadDir(k.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}

// NetnsInode returns the inode of the namespace pinned as name.
func (k *Netlink) NetnsInode(name string) (uint64, error) { return nsexec.Inode(k.path(name)) }

// NetnsIdentity returns what identifies the namespace pinned as name: its
// inode and its pin's mount (the pin file's own inode is hidden under the
// mount, and left 0).
func (k *Netlink) NetnsIdentity(name string) (NetnsID, error) {
	ino, err := nsexec.Inode(k.path(name))
	if err != nil {
		return NetnsID{}, err
	}
	return NetnsID{Ino: ino, Mnt: nsexec.MountID(k.path(name))}, nil
}

// NetnsTag returns the tag of namespace name (its lo's alias).
func (k *Netlink) NetnsTag(name string) (string, error) { return k.loAlias(name) }

func (k *Netlink) NetnsExists(name string) (bool, error) {
	_, err := os.Lstat(filepath.Join(k.Dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// linkAdd makes the link of s and remembers the indexes it learns.
func (k *Netlink) linkAdd(s LinkSpec) error {
	if s.Kind == "veth" {
		peer, err := k.fd(s.PeerNS)
		if err != nil {
			return err
		}
		index, peerIndex, err := k.vethAdd(s, peer)
		if err != nil {
			return err
		}
		if index > 0 {
			k.rememberLink(s.NS, s.Name, index)
		}
		if peerIndex > 0 {
			k.rememberLink(s.PeerNS, s.PeerName, peerIndex)
		}
		return nil
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = s.Name
	attrs.HardwareAddr = s.MAC
	attrs.MTU = s.MTU
	attrs.Group = s.Group
	var l netlink.Link
	h, err := k.h(s.NS)
	if err != nil {
		return err
	}
	inPlace := h // the handle the link is made with, unless made in its parent's namespace
	switch s.Kind {
	case "bridge":
		if s.STP {
			return k.bridgeAdd(s)
		}
		l = &netlink.Bridge{LinkAttrs: attrs}
	case "dummy":
		l = &netlink.Dummy{LinkAttrs: attrs}
	case "vxlan":
		v := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: s.VNI, Port: cmp.Or(s.Port, VxlanPort), Learning: !s.NoLearning}
		if s.Remote.IsValid() {
			v.Group = s.Remote.AsSlice()
		}
		if s.Local.IsValid() {
			v.SrcAddr = s.Local.AsSlice()
		}
		if s.SocketHost && s.NS != Host {
			// Made by the host's handle, so that its socket is
			// there, and placed in s.NS by the same request.
			fd, err := k.fd(s.NS)
			if err != nil {
				return err
			}
			v.Namespace = netlink.NsFd(fd)
			if h, err = k.h(Host); err != nil {
				return err
			}
		}
		if s.Parent != "" {
			parent, err := h.LinkByName(s.Parent)
			if err != nil {
				return fmt.Errorf("parent %q in netns %q: %w", s.Parent, NSArg(s.NS), notFound(err))
			}
			v.VtepDevIndex = parent.Attrs().Index
		}
		l = v
	case "macvlan", "macvtap", "vlan":
		// Created in the parent's namespace, where its index means
		// something, and placed in s.NS by the same request.
		ph, err := k.h(s.ParentNS)
		if err != nil {
			return err
		}
		parent, err := ph.LinkByName(s.Parent)
		if err != nil {
			return fmt.Errorf("parent %q in netns %q: %w", s.Parent, NSArg(s.ParentNS), notFound(err))
		}
		attrs.ParentIndex = parent.Attrs().Index
		if s.NS != s.ParentNS {
			fd, err := k.fd(s.NS)
			if err != nil {
				return err
			}
			attrs.Namespace = netlink.NsFd(fd)
		}
		h = ph
		switch s.Kind {
		case "macvlan":
			l = &netlink.Macvlan{LinkAttrs: attrs, Mode: macvlanModes[s.Mode]}
		case "macvtap":
			l = &netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: attrs, Mode: macvlanModes[s.Mode]}}
		case "vlan":
			l = &netlink.Vlan{LinkAttrs: attrs, VlanId: s.VlanID}
		}
	default:
		return fmt.Errorf("unknown link kind %q", s.Kind)
	}
	if err := h.LinkAdd(l); err != nil {
		return err
	}
	if i := l.Attrs().Index; i > 0 && h == inPlace {
		k.rememberLink(s.NS, s.Name, i) // looked up by the library after the request
	}
	return nil
}

func (k *Netlink) LinkAdd(s LinkSpec) error {
	err := k.linkAdd(s)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("the kernel has no '%s' link type", s.Kind)
	}
	if err != nil || s.Alias == "" {
		return err
	}
	err = k.LinkSetAlias(s.NS, s.Name, s.Alias)
	if err == nil && s.Kind == "veth" && !s.PeerUntagged {
		err = k.LinkSetAlias(s.PeerNS, s.PeerName, s.Alias)
	}
	if err != nil {
		// The change failed as a whole: take back the device just made
		// (by its index, so nothing else can be hit).
		k.forgetLink(s.NS, s.Name)
		k.forgetLink(s.PeerNS, s.PeerName)
		nh, herr := k.h(s.NS)
		if herr != nil {
			err = errors.Join(err, fmt.Errorf("taking %q back: %w", s.Name, herr))
		} else if made, lerr := nh.LinkByName(s.Name); lerr == nil {
			if derr := nh.LinkDel(made); derr != nil {
				err = errors.Join(err, fmt.Errorf("taking %q back: %w", s.Name, derr))
			}
		}
		return fmt.Errorf("tagging %q: %w", s.Name, err)
	}
	return nil
}

var macvlanModes = map[string]netlink.MacvlanMode{
	"private":  netlink.MACVLAN_MODE_PRIVATE,
	"vepa":     netlink.MACVLAN_MODE_VEPA,
	"bridge":   netlink.MACVLAN_MODE_BRIDGE,
	"passthru": netlink.MACVLAN_MODE_PASSTHRU,
}

func notFound(err error) error {
	var lnf netlink.LinkNotFoundError
	if errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) {
		return ErrNotFound
	}
	return err
}

// link looks link name of ns up by name, and remembers its index.
func (k *Netlink) link(ns, name string) (*netlink.Handle, netlink.Link, error) {
	h, err := k.h(ns)
	if err != nil {
		return nil, nil, err
	}
	l, err := h.LinkByName(name)
	if err != nil {
		k.forgetLink(ns, name)
		return nil, nil, fmt.Errorf("link %q in netns %q: %w", name, NSArg(ns), notFound(err))
	}
	k.rememberLink(ns, name, l.Attrs().Index)
	return h, l, nil
}

// withLink runs fn on link name of ns, by its remembered index if there is
// one (no lookup), else looked up by name. A remembered index the kernel no
// longer knows (the link was deleted or moved by someone else) is dropped
// and the name looked up again: indexes are not reused soon, so a stale one
// cannot reach another device.
func (k *Netlink) withLink(ns, name string, fn func(h *netlink.Handle, l netlink.Link) error) error {
	h, err := k.h(ns)
	if err != nil {
		return err
	}
	return k.withIndex(ns, name, func(i int) error {
		return fn(h, &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: i, Name: name}})
	})
}

// withIndex runs fn on the index of link name of ns, as withLink does.
func (k *Netlink) withIndex(ns, name string, fn func(index int) error) error {
	if i, ok := k.cachedIndex(ns, name); ok {
		err := fn(i)
		if !errors.Is(err, unix.ENODEV) {
			return err
		}
		k.forgetLink(ns, name)
	}
	i, err := k.linkIndex(ns, name)
	if err != nil {
		return err
	}
	return fn(i)
}

// linkIndex returns the index of link name of ns: the remembered one, or
// looked up.
func (k *Netlink) linkIndex(ns, name string) (int, error) {
	if i, ok := k.cachedIndex(ns, name); ok {
		return i, nil
	}
	_, l, err := k.link(ns, name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

func (k *Netlink) LinkGet(ns, name string) (LinkInfo, error) {
	h, l, err := k.link(ns, name)
	if err != nil {
		return LinkInfo{}, err
	}
	a := l.Attrs()
	info := LinkInfo{
		NS: ns, Name: a.Name, Kind: l.Type(), Index: a.Index, MAC: a.HardwareAddr.String(),
		MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, Alias: a.Alias,
	}
	if a.MasterIndex != 0 {
		if m, err := h.LinkByIndex(a.MasterIndex); err == nil {
			info.Master = m.Attrs().Name
		}
	}
	return info, nil
}

func (k *Netlink) LinkDel(ns, name string, fp Fingerprint) error {
	h, l, err := k.link(ns, name)
	if errors.Is(err, ErrNotFound) {
		return nil // already gone: an undo is idempotent
	}
	if err != nil {
		return err
	}
	if a := l.Attrs(); !fp.Matches(a.Alias, a.HardwareAddr.String()) {
		return fmt.Errorf("link %q in netns %q has tag %q, not %q: %w", name, NSArg(ns), a.Alias, fp.Alias, ErrNotOurs)
	}
	k.forgetLink(ns, name)
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

// LinkDelGroup deletes, with one request, the links of ns in the device
// group of tag (see GroupOf) that are among names, and returns those no
// longer there: deleting devices one by one costs the kernel an RCU barrier
// each. It deletes nothing unless every link in the group carries tag and
// is named: a foreign link in the group would go too.
//
// Equivalent to: ip link del group $group
func (k *Netlink) LinkDelGroup(ns, tag string, names []string) ([]string, error) {
	if ns != Host {
		return nil, fmt.Errorf("group deletion is done in the host only")
	}
	h, err := k.h(ns)
	if err != nil {
		return nil, err
	}
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	group := GroupOf(tag)
	ours := map[string]bool{}
	for _, n := range names {
		ours[n] = true
	}
	present, members := map[string]bool{}, map[string]bool{}
	for _, l := range links {
		a := l.Attrs()
		present[a.Name] = true
		if a.Group != group {
			continue // not in the group (made before groups): deleted on its own
		}
		if a.Alias != tag || !ours[a.Name] {
			return nil, fmt.Errorf("link %q is in group %#x but not this lab's: %w", a.Name, group, ErrNotOurs)
		}
		members[a.Name] = true
	}
	if len(members) > 0 {
		req := nl.NewNetlinkRequest(unix.RTM_DELLINK, 0)
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
		if _, err := k.request(ns, req, 0); err != nil {
			return nil, fmt.Errorf("deleting group %#x: %w", group, err)
		}
	}
	var gone []string
	for _, n := range names {
		if members[n] || !present[n] {
			gone = append(gone, n)
			k.forgetLink(ns, n)
		}
	}
	return gone, nil
}

func (k *Netlink) LinkSetUp(ns, name string, up bool) error {
	return k.withIndex(ns, name, func(i int) error { return k.setLink(ns, i, nil, &up) })
}

func (k *Netlink) LinkSetMaster(ns, name, master string) error {
	if master == "" {
		return k.withIndex(ns, name, func(i int) error { return k.setMaster(ns, i, 0) })
	}
	mi, err := k.linkIndex(ns, master)
	if err != nil {
		return err
	}
	err = k.withIndex(ns, name, func(i int) error { return k.setMaster(ns, i, mi) })
	if errors.Is(err, unix.EXFULL) {
		return fmt.Errorf("bridge %q cannot take another port: %w", master, ErrBridgeFull)
	}
	return err
}

func (k *Netlink) LinkSetMTU(ns, name string, mtu int) error {
	return k.withLink(ns, name, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetMTU(l, mtu) })
}

func (k *Netlink) LinkSetMAC(ns, name string, mac net.HardwareAddr) error {
	return k.withLink(ns, name, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetHardwareAddr(l, mac) })
}

func (k *Netlink) LinkSetAlias(ns, name, alias string) error {
	return k.withIndex(ns, name, func(i int) error { return k.setLink(ns, i, &alias, nil) })
}

func (k *Netlink) LinkSetHairpin(ns, name string, on bool) error {
	return k.withLink(ns, name, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetHairpin(l, on) })
}

func (k *Netlink) LinkMove(ns, name, to string) error {
	fd, err := k.fd(to)
	if err != nil {
		return err
	}
	defer k.forgetLink(ns, name) // its index is the new namespace's now
	return k.withLink(ns, name, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetNsFd(l, int(fd)) })
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
}

func (k *Netlink) AddrAdd(ns, dev string, p netip.Prefix) error {
	err := k.withIndex(ns, dev, func(i int) error { return k.addrAdd(ns, i, p) })
	if p.Addr().Is6() && errors.Is(err, unix.EACCES) {
		return fmt.Errorf("IPv6 is off on %q in netns %q (disable_ipv6 = 1): %w", dev, NSArg(ns), err)
	}
	return err
}

func (k *Netlink) AddrDel(ns, dev string, p netip.Prefix) error {
	h, l, err := k.link(ns, dev)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := h.AddrDel(l, nlAddr(p)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return err
	}
	return nil
}

func (k *Netlink) nlRoute(ns string, r Route) (*netlink.Handle, *netlink.Route, error) {
	h, err := k.h(ns)
	if err != nil {
		return nil, nil, err
	}
	nr := &netlink.Route{Protocol: netlink.RouteProtocol(r.Protocol()), Priority: r.Metric, Family: unix.AF_INET, Table: r.TableOf()}
	if r.Type != "" {
		t, ok := RouteTypes[r.Type]
		if !ok {
			return nil, nil, fmt.Errorf("no route type %q", r.Type)
		}
		nr.Type = int(t)
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.Family == 6 {
		nr.Family = unix.AF_INET6
	}
	if r.Dst.IsValid() {
		nr.Dst = nlAddr(r.Dst.Masked()).IPNet
	} else if nr.Family == unix.AF_INET6 {
		nr.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	} else {
		nr.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
	} else if r.Dev != "" {
		nr.Scope = netlink.SCOPE_LINK // as iproute2 does for a route without a gateway
	}
	if r.Dev != "" {
		l, err := h.LinkByName(r.Dev)
		if err != nil {
			return nil, nil, fmt.Errorf("link %q in netns %q: %w", r.Dev, NSArg(ns), notFound(err))
		}
		nr.LinkIndex = l.Attrs().Index
	}
	return h, nr, nil
}

func (k *Netlink) RouteAdd(ns string, r Route) error {
	h, nr, err := k.nlRoute(ns, r)
	if err != nil {
		return err
	}
	return h.RouteAdd(nr)
}

func (k *Netlink) RouteReplace(ns string, r Route) error {
	h, nr, err := k.nlRoute(ns, r)
	if err != nil {
		return err
	}
	return h.RouteReplace(nr)
}

func (k *Netlink) RouteDel(ns string, r Route) error {
	h, nr, err := k.nlRoute(ns, r)
	if errors.Is(err, ErrNotFound) {
		return nil // its device is gone, and the route with it
	}
	if err != nil {
		return err
	}
	if err := h.RouteDel(nr); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// sysctlPath maps a key to its file, as sysctl(8) does: with a slash in it
// the key is a path (so a device name may hold dots: net/ipv4/conf/a.10/x),
// else dots separate its parts.
func sysctlPath(key string) string {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return filepath.Join("/proc/sys", key)
}

func (k *Netlink) SysctlGet(ns, key string) (string, error) {
	var v []byte
	err := nsexec.Do(k.path(ns), func() (err error) {
		v, err = os.ReadFile(sysctlPath(key))
		return err
	})
	return strings.TrimSpace(string(v)), err
}

func (k *Netlink) SysctlSet(ns, key, value string) error {
	return nsexec.Do(k.path(ns), func() error {
		return os.WriteFile(sysctlPath(key), []byte(value), 0o644)
	})
}

func (k *Netlink) Start(ns string, cmd *exec.Cmd) error {
	return nsexec.Start(k.path(ns), cmd)
}

// Settle waits, for at most ten seconds, until none of the links is left
// in ns: the kernel frees a deleted namespace, and the veths with an end in
// it, asynchronously. A link of the name that does not match its
// fingerprint is not the lab's (someone made one since): it is not waited
// for.
func (k *Netlink) Settle(ns string, links []NamedLink) error {
	h, err := k.h(ns)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, want := range links {
		for {
			l, err := h.LinkByName(want.Name)
			if notFound(err) == ErrNotFound {
				break
			}
			if err != nil {
				return fmt.Errorf("link %q in netns %q: %w", want.Name, NSArg(ns), err)
			}
			if !want.Matches(l.Attrs().Alias, l.Attrs().HardwareAddr.String()) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("link %q in netns %q is still there after its namespace was deleted", want.Name, NSArg(ns))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return nil
}

// Path returns where namespace ns is pinned ("" for the host namespace), for
// work that must enter it through nsexec.Do.
func (k *Netlink) Path(ns string) string { return k.path(ns) }
