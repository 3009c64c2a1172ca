package builtins

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/nsrun/nsrun/runtime/engine"
	"github.com/nsrun/nsrun/runtime/journal"
	"github.com/nsrun/nsrun/runtime/kernel"
)

// A lab across machines: machine() declares a host, netns(on=) and
// bridge(on=) place objects on it, a veth whose ends land on two machines
// is a VXLAN link between them, and each observation is made where its
// namespace is and its answer shared (see engine.Across).

// Machine is a host a lab has a part on (machine()).
type Machine struct{ m journal.Machine }

var _ starlark.HasAttrs = (*Machine)(nil)

func (m *Machine) String() string        { return fmt.Sprintf("machine(%q)", m.m.Name) }
func (m *Machine) Type() string          { return "machine" }
func (m *Machine) Freeze()               {}
func (m *Machine) Truth() starlark.Bool  { return true }
func (m *Machine) Hash() (uint32, error) { return starlark.String(m.m.Name).Hash() }
func (m *Machine) AttrNames() []string   { return []string{"host", "name", "ssh"} }

func (m *Machine) Attr(name string) (starlark.Value, error) {
	switch name {
	case "name":
		return starlark.String(m.m.Name), nil
	case "ssh":
		return starlark.String(m.m.SSH), nil
	case "host":
		return starlark.NewBuiltin("host", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			return &Netns{name: kernel.Host, machine: m.m.Name}, nil
		}).BindReceiver(m), nil
	}
	return nil, nil
}

// machine(name, ssh="user@host", ssh_config=None, underlay=None,
// nsrun="nsrun") declares a machine the lab has a part on, reached with
// OpenSSH's ssh (the user's keys, agent, known_hosts and configuration;
// ssh_config is passed as ssh -F; host keys are always checked) running
// nsrun there as root (nsrun may be words: "sudo -n nsrun"). underlay is the address its VXLAN endpoints use (default:
// the address ssh reaches). netns(..., on=m) and bridge(..., on=m) place
// objects on it; machine("local"), the machine nsrun runs on, needs no
// declaring. Declare every machine before the recipe's first check.
func machine(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, ssh, config string
	var underlay ipAddr
	nsrun := "nsrun"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "ssh?", &ssh,
		"ssh_config?", &config, "underlay?", &underlay, "nsrun?", &nsrun); err != nil {
		return nil, err
	}
	if name == engine.Local {
		if ssh != "" || config != "" {
			return nil, fmt.Errorf("%s: %q is the machine nsrun runs on: it is not reached over SSH", b.Name(), name)
		}
		return &Machine{journal.Machine{Name: name}}, nil
	}
	if err := machineName(name); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if ssh == "" {
		return nil, fmt.Errorf("%s: machine %q needs ssh=, the user@host ssh reaches it as", b.Name(), name)
	}
	if strings.HasPrefix(ssh, "-") || strings.ContainsAny(ssh, " \t\n") {
		return nil, fmt.Errorf("%s: for parameter ssh: %q is not a destination (user@host)", b.Name(), ssh)
	}
	if strings.TrimSpace(nsrun) == "" {
		return nil, fmt.Errorf("%s: for parameter nsrun: %q names no command", b.Name(), nsrun)
	}
	m := journal.Machine{Name: name, SSH: ssh, Config: config, Nsrun: nsrun}
	if u := netip.Addr(underlay); u.IsValid() {
		m.Underlay = u.String()
	}
	if config != "" {
		m.Config = abs(thread, config)
	}
	rt, err := engine.FromThread(thread)
	if err != nil {
		return nil, err
	}
	across := rt.Across()
	if across == nil {
		k, err := rt.Kernel()
		if err != nil {
			return nil, err
		}
		if _, planning := kernel.As[kernel.Planner](k); !planning {
			// A session (the REPL): what it would place on m it would
			// make here.
			return nil, fmt.Errorf("%s: machine %q: a lab across machines is made by `nsrun run` on its coordinator, not here", b.Name(), name)
		}
	}
	if !rt.Declare(m) {
		return nil, fmt.Errorf("%s: machine %q is declared twice", b.Name(), name)
	}
	step := journal.Step{Op: journal.OpPart, Name: name, New: rt.Lab, Machine: &m}
	if err := rt.Change(thread, step, func(k kernel.Kernel, _ *journal.Step) error {
		if _, planning := kernel.As[kernel.Planner](k); across == nil || planning {
			return nil
		}
		return across.Begin(m)
	}); err != nil {
		return nil, err
	}
	return &Machine{m}, nil
}

// machineName checks a machine's name: a word that can name it in
// messages and on the command line.
func machineName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("%q is not a machine name (1 to 63 letters, digits, '-', '_', '.')", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q is not a machine name (1 to 63 letters, digits, '-', '_', '.')", name)
		}
	}
	return nil
}

// abs is a path of the recipe's, relative to the directory of the file
// that calls the builtin, made absolute.
func abs(thread *starlark.Thread, path string) string {
	if filepath.IsAbs(path) || thread.CallStackDepth() < 2 {
		return path
	}
	joined := filepath.Join(filepath.Dir(thread.CallFrame(1).Pos.Filename()), path)
	if a, err := filepath.Abs(joined); err == nil {
		return a // ssh runs with the part's directory, not the recipe's
	}
	return joined
}

// onArg unpacks on=, a machine() value or a machine's name.
type onArg struct{ name string }

func (o *onArg) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case *Machine:
		o.name = v.m.Name
	case starlark.String:
		o.name = string(v)
	case starlark.NoneType:
	default:
		return fmt.Errorf("got %s, want machine", v.Type())
	}
	return nil
}

// nsMachine is the machine of namespace n: a machine's own namespace
// (m.host()), or where the lab placed n.
func nsMachine(rt *engine.Runtime, n *Netns) string {
	if n.name == kernel.Host && n.machine != "" {
		return n.machine
	}
	return rt.MachineOf(n.name, "")
}

// vxlanMTU is a cross-machine link's MTU when the recipe gives none: an
// underlay of 1500 bytes less VXLAN's 50.
const vxlanMTU = 1450

// crossVeth makes a veth whose ends are on two machines: each end is a
// vxlan in its namespace, its socket in its machine's own namespace,
// sending to the other machine's underlay address, on a VNI of the
// lab's and the link's names.
func crossVeth(thread *starlark.Thread, b *starlark.Builtin, rt *engine.Runtime, a, p kernel.LinkSpec, ns, peerNS *Netns) (starlark.Value, error) {
	mA, mB := nsMachine(rt, ns), nsMachine(rt, peerNS)
	uA, err := underlay(rt, mA)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	uB, err := underlay(rt, mB)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	vni := linkVNI(rt, ns.name+"/"+a.Name, peerNS.name+"/"+p.Name)
	if a.MTU == 0 {
		a.MTU = vxlanMTU
	}
	var ends [2]*Link
	for i, e := range []struct {
		s           kernel.LinkSpec
		ns          *Netns
		local, peer netip.Addr
	}{{a, ns, uA, uB}, {p, peerNS, uB, uA}} {
		s := e.s
		s.Kind, s.VNI, s.Port, s.SocketHost, s.MTU = "vxlan", vni, kernel.VxlanPort, true, a.MTU
		s.Local, s.Remote = e.local, e.peer
		if e.ns.name == kernel.Host {
			if err := rt.Place(kernel.Host, rt.HostLinkOf(s.Name), nsMachine(rt, e.ns)); err != nil {
				return nil, err
			}
		}
		l, _, err := createLink(thread, b, s, e.ns, nil)
		if err != nil {
			return nil, err
		}
		ends[i] = l
	}
	return starlark.Tuple{ends[0], ends[1]}, nil
}

// underlay is machine m's underlay address: the run's (see
// engine.Across), or in a plan the one the recipe gives, if any.
func underlay(rt *engine.Runtime, m string) (netip.Addr, error) {
	if a := rt.Across(); a != nil {
		return a.Underlay(m)
	}
	if u, err := netip.ParseAddr(rt.Machines()[m].Underlay); err == nil {
		return u, nil
	}
	return netip.Addr{}, nil
}

// linkVNI is the VNI of a cross-machine link: a hash of the lab's name and
// its ends', the same on every machine and every run; one the lab already
// uses is passed over.
func linkVNI(rt *engine.Runtime, a, b string) int {
	used := rt.Memo("across.vnis", func() any { return map[int]bool{} }).(map[int]bool)
	h := fnv.New32a()
	h.Write([]byte(rt.Lab + "\x00" + a + "\x00" + b))
	vni := int(h.Sum32()%(1<<24-2)) + 1
	for used[vni] {
		vni = vni%(1<<24-2) + 1
	}
	used[vni] = true
	return vni
}

// shared makes an observation of a namespace's a meeting of the lab's
// parts (see engine.Across): fn runs on the machine of the namespace nsOf
// finds in its arguments, and every part returns its answer, or fails
// with its error. On one machine, and in a plan, fn just runs.
func shared(fn builtinFunc, nsOf func(recv starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple) *Netns) builtinFunc {
	return func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		rt, err := engine.FromThread(thread)
		if err != nil || rt.Across() == nil {
			return fn(thread, b, args, kwargs)
		}
		if k, err := rt.Kernel(); err != nil {
			return nil, err
		} else if _, planning := kernel.As[kernel.Planner](k); planning {
			return fn(thread, b, args, kwargs)
		}
		if err := rt.Meet(false); err != nil {
			return nil, err
		}
		var mine []byte
		if ns := nsOf(b.Receiver(), args, kwargs); ns == nil || nsMachine(rt, ns) == rt.Across().Machine() {
			v, err := fn(thread, b, args, kwargs)
			if mine, err = encodeAnswer(v, err); err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
		}
		all, err := rt.Exchange(mine)
		if err != nil {
			return nil, err
		}
		for _, a := range all {
			if len(a) > 0 {
				return decodeAnswer(rt, a)
			}
		}
		return nil, fmt.Errorf("%s: no machine of the lab made it", b.Name())
	}
}

// elsewhere reports whether namespace ns is another machine's, in a part
// of a lab across machines: what is done in it is done there.
func elsewhere(rt *engine.Runtime, ns *Netns) bool {
	a := rt.Across()
	return a != nil && nsMachine(rt, ns) != a.Machine()
}

// noProcessIn refuses a process of the lab's in another machine's own
// namespace (m.host()): its step would be placed by the namespace's name,
// which is every machine's host().
func noProcessIn(rt *engine.Runtime, b *starlark.Builtin, ns *Netns) error {
	if m := nsMachine(rt, ns); ns.name == kernel.Host && m != engine.Local {
		return fmt.Errorf("%s: %s.host() is machine %q's own namespace: start the lab's processes in a namespace of the lab's on it", b.Name(), m, m)
	}
	return nil
}

// carried makes the outcome of a change in namespace ns (v, or err) every
// part's: each part made the change (its machine's for real, the others
// as away), and the answer of the namespace's machine is the one the
// recipe goes on with everywhere. On one machine, and in a plan, it is v
// and err.
func carried(rt *engine.Runtime, ns *Netns, v starlark.Value, err error) (starlark.Value, error) {
	if rt.Across() == nil {
		return v, err
	}
	if k, kerr := rt.Kernel(); kerr != nil {
		return nil, kerr
	} else if _, planning := kernel.As[kernel.Planner](k); planning {
		return v, err
	}
	var mine []byte
	if nsMachine(rt, ns) == rt.Across().Machine() {
		var eerr error
		if mine, eerr = encodeAnswer(v, err); eerr != nil {
			return nil, eerr
		}
	}
	all, xerr := rt.Exchange(mine)
	if xerr != nil {
		return nil, xerr
	}
	for _, a := range all {
		if len(a) > 0 {
			return decodeAnswer(rt, a)
		}
	}
	return nil, fmt.Errorf("no machine of the lab answered for netns %q", ns.Name())
}

type builtinFunc = func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

// firstNetns finds the namespace an observation is of: the receiver (a
// namespace's method), or its netns= argument, or its first.
func firstNetns(recv starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple) *Netns {
	if n, ok := recv.(*Netns); ok {
		return n
	}
	if len(args) > 0 {
		if l, ok := args[0].(*Link); ok {
			return l.state.ns
		}
	}
	for _, kv := range kwargs {
		if kv[0] == starlark.String("netns") {
			n, _ := kv[1].(*Netns)
			return n
		}
	}
	if len(args) > 0 {
		n, _ := args[0].(*Netns)
		return n
	}
	return nil
}

// An answer is an observation's value, or its error, as it crosses
// machines.
type answer struct {
	Err   string `json:"err,omitempty"`
	Value *value `json:"value,omitempty"`
}

// value is a Starlark value of the kinds observations return.
type value struct {
	T     string            `json:"t"` // None, bool, int, float, string, bytes, list, tuple, dict, struct
	S     string            `json:"s,omitempty"`
	F     float64           `json:"f,omitempty"`
	B     bool              `json:"b,omitempty"`
	Items []*value          `json:"items,omitempty"` // list, tuple; dict: key, value, key, ...
	Ctor  string            `json:"ctor,omitempty"`  // struct
	M     string            `json:"m,omitempty"`     // netns: the machine of a machine's own (m.host())
	Attrs map[string]*value `json:"attrs,omitempty"`
}

func encodeAnswer(v starlark.Value, err error) ([]byte, error) {
	var a answer
	if err != nil {
		a.Err = err.Error()
		var ev *starlark.EvalError
		if errors.As(err, &ev) {
			a.Err = ev.Msg
		}
	} else {
		val, err := encodeValue(v)
		if err != nil {
			return nil, err
		}
		a.Value = val
	}
	return json.Marshal(a)
}

func decodeAnswer(rt *engine.Runtime, b []byte) (starlark.Value, error) {
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("an answer from another machine: %w", err)
	}
	if a.Err != "" {
		return nil, errors.New(a.Err)
	}
	if a.Value == nil {
		return starlark.None, nil
	}
	return decodeValue(rt, a.Value)
}

func encodeValue(v starlark.Value) (*value, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return &value{T: "None"}, nil
	case starlark.Bool:
		return &value{T: "bool", B: bool(v)}, nil
	case starlark.Int:
		return &value{T: "int", S: v.String()}, nil
	case starlark.Float:
		return &value{T: "float", F: float64(v)}, nil
	case starlark.String:
		return &value{T: "string", S: string(v)}, nil
	case *Netns: // a namespace of the lab's, the same on every machine
		return &value{T: "netns", S: v.name, M: v.machine}, nil
	case starlark.Bytes:
		return &value{T: "bytes", S: string(v)}, nil
	case *starlark.List, starlark.Tuple:
		out := &value{T: "list"}
		if _, ok := v.(starlark.Tuple); ok {
			out.T = "tuple"
		}
		it := v.(starlark.Iterable).Iterate()
		defer it.Done()
		var x starlark.Value
		for it.Next(&x) {
			e, err := encodeValue(x)
			if err != nil {
				return nil, err
			}
			out.Items = append(out.Items, e)
		}
		return out, nil
	case *starlark.Dict:
		out := &value{T: "dict"}
		for _, kv := range v.Items() {
			k, err := encodeValue(kv[0])
			if err != nil {
				return nil, err
			}
			e, err := encodeValue(kv[1])
			if err != nil {
				return nil, err
			}
			out.Items = append(out.Items, k, e)
		}
		return out, nil
	case *starlarkstruct.Struct:
		out := &value{T: "struct", Attrs: map[string]*value{}}
		if s, ok := v.Constructor().(starlark.String); ok { // observations' structs are named by a string
			out.Ctor = string(s)
		}
		for _, name := range v.AttrNames() {
			x, _ := v.Attr(name)
			e, err := encodeValue(x)
			if err != nil {
				return nil, err
			}
			out.Attrs[name] = e
		}
		return out, nil
	}
	return nil, fmt.Errorf("its answer, a %s, cannot be given to the lab's other machines", v.Type())
}

func decodeValue(rt *engine.Runtime, v *value) (starlark.Value, error) {
	switch v.T {
	case "None":
		return starlark.None, nil
	case "netns":
		if v.S == kernel.Host || rt == nil {
			return &Netns{name: v.S, machine: v.M}, nil // a machine's own
		}
		return netnsValue(rt, v.S), nil
	case "bool":
		return starlark.Bool(v.B), nil
	case "int":
		i, ok := new(big.Int).SetString(v.S, 10)
		if !ok {
			return nil, fmt.Errorf("an answer from another machine: bad int %q", v.S)
		}
		return starlark.MakeBigInt(i), nil
	case "float":
		return starlark.Float(v.F), nil
	case "string":
		return starlark.String(v.S), nil
	case "bytes":
		return starlark.Bytes(v.S), nil
	case "list", "tuple":
		items := make([]starlark.Value, len(v.Items))
		for i, e := range v.Items {
			x, err := decodeValue(rt, e)
			if err != nil {
				return nil, err
			}
			items[i] = x
		}
		if v.T == "tuple" {
			return starlark.Tuple(items), nil
		}
		return starlark.NewList(items), nil
	case "dict":
		d := starlark.NewDict(len(v.Items) / 2)
		for i := 0; i+1 < len(v.Items); i += 2 {
			k, err := decodeValue(rt, v.Items[i])
			if err != nil {
				return nil, err
			}
			x, err := decodeValue(rt, v.Items[i+1])
			if err != nil {
				return nil, err
			}
			if err := d.SetKey(k, x); err != nil {
				return nil, err
			}
		}
		return d, nil
	case "struct":
		attrs := starlark.StringDict{}
		for name, e := range v.Attrs {
			x, err := decodeValue(rt, e)
			if err != nil {
				return nil, err
			}
			attrs[name] = x
		}
		var ctor starlark.Value = starlarkstruct.Default
		if v.Ctor != "" {
			ctor = starlark.String(v.Ctor)
		}
		return starlarkstruct.FromStringDict(ctor, attrs), nil
	}
	return nil, fmt.Errorf("an answer from another machine: unknown kind %q", v.T)
}

// placeHostLink places link name of ns on machine m: in m's own namespace
// if ns is the host's and given is false; a namespace given must be on m.
func placeHostLink(rt *engine.Runtime, ns *Netns, given bool, name, m string) (*Netns, error) {
	if given && ns.name != kernel.Host {
		if got := nsMachine(rt, ns); got != m {
			return nil, fmt.Errorf("netns %q is on machine %q, not on=%q", ns.Name(), got, m)
		}
		return ns, nil
	}
	if ns.machine != "" && ns.machine != m {
		return nil, fmt.Errorf("%s is machine %q's, not on=%q", ns, ns.machine, m)
	}
	if m != engine.Local {
		ns = &Netns{name: kernel.Host, machine: m}
	}
	return ns, rt.Place(kernel.Host, rt.HostLinkOf(name), m)
}
