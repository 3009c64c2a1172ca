package machines

import (
	"github.com/vishvananda/netlink"
)

// A vxlanOf is a VXLAN link the machine has in its own namespace.
type vxlanOf struct {
	name  string
	vni   int
	where string
}

// hostVxlans lists the VXLAN links of the namespace nsrun runs in: those
// whose sockets a lab's VXLAN would share.
func hostVxlans() ([]vxlanOf, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []vxlanOf
	for _, l := range links {
		if v, ok := l.(*netlink.Vxlan); ok {
			out = append(out, vxlanOf{name: v.Name, vni: v.VxlanId, where: "in its own namespace"})
		}
	}
	return out, nil
}
