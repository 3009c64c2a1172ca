package machines

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
)

// A message is one line of the protocol between the coordinator and a
// part, JSON, in either direction.
type message struct {
	// From a part.
	Hello  *hello  `json:"hello,omitempty"`
	Ready  bool    `json:"ready,omitempty"`
	At     int     `json:"at,omitempty"` // the recipe's observation number
	Pos    string  `json:"pos,omitempty"`
	Data   []byte  `json:"data,omitempty"`
	Done   bool    `json:"done,omitempty"` // the part's recipe ended (Err: failed)
	Err    string  `json:"err,omitempty"`
	Result *result `json:"result,omitempty"` // the part is over

	// From the coordinator.
	Bundle *Bundle  `json:"bundle,omitempty"`
	Go     bool     `json:"go,omitempty"`
	All    [][]byte `json:"all,omitempty"`
	Commit bool     `json:"commit,omitempty"`
	Remove bool     `json:"remove,omitempty"` // with Commit: made well, the lab is removed now (--rm)
	Abort  string   `json:"abort,omitempty"`
	Lease  float64  `json:"lease,omitempty"` // seconds the part may go without word
}

// hello is what a part says of its machine first.
type hello struct {
	Version string `json:"version"`
	UID     int    `json:"uid"`
	// SSH is $SSH_CONNECTION: the client's address and port, the
	// machine's address and port.
	SSH string `json:"ssh"`
}

// result is how a part ended.
type result struct {
	State  string   `json:"state"` // the lab's state on the machine (store.LabUp, store.LabRemoved, ...)
	Made   int      `json:"made"`
	Undone int      `json:"undone"`
	Failed []string `json:"failed,omitempty"`
	Err    string   `json:"err,omitempty"`
}

// A Bundle is what a part runs: the recipe's files, and the lab it is a
// part of.
type Bundle struct {
	Lab     string            `json:"lab"`
	Machine string            `json:"machine"`
	Prefix  string            `json:"prefix,omitempty"`
	Recipe  string            `json:"recipe"` // a path of Files
	Dir     string            `json:"dir"`    // the coordinator's directory of the recipe, for messages
	Args    []string          `json:"args,omitempty"`
	Files   map[string][]byte `json:"files"` // by path relative to Dir
	// Underlays are the machines' underlay addresses, by name.
	Underlays map[string]string `json:"underlays"`
	Lease     float64           `json:"lease"` // seconds
	MaxSteps  uint64            `json:"max_steps,omitempty"`
}

// conn is one end of the protocol.
type conn struct {
	mu  sync.Mutex
	w   io.Writer
	enc *json.Encoder
	in  chan message // closed at EOF, or at a line that is not a message
	err error        // why in closed, once it is
}

func newConn(r io.Reader, w io.Writer) *conn {
	c := &conn{w: w, enc: json.NewEncoder(w), in: make(chan message, 16)}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 256<<20)
		for sc.Scan() {
			var m message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				c.err = err
				break
			}
			c.in <- m
		}
		if c.err == nil {
			c.err = sc.Err()
		}
		close(c.in)
	}()
	return c
}

func (c *conn) send(m message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enc.Encode(m)
}
