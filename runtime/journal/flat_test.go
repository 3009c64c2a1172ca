package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// flatLines are records as runs write them, and lines flatRecord must
// leave to the JSON decoder.
var flatLines = []string{
	`{"seq":1,"state":"intent","pos":"star.star:16:12","op":"link","name":"br-star","kind":"bridge","alias":"nsrun:star","mac":"7e:d1:97:e2:2e:d4"}`,
	`{"seq":4,"state":"intent","pos":"star.star:19:21","op":"link","name":"v-h0","kind":"veth","alias":"nsrun:star","mac":"26:18:39:d5:4e:51","peer_ns":"h0","peer":"eth0","peer_mac":"be:b7:36:1d:bf:63"}`,
	`{"seq":7,"state":"intent","pos":"star.star:22:13","op":"addr","ns":"h0","name":"eth0","addr":"10.0.0.1/8"}`,
	`{"seq":8,"state":"intent","pos":"s:1:1","op":"addr","ns":"h0","name":"eth0","addr":"fd00::1/64"}`,
	`{"seq":3,"state":"done","pos":"s:1:1","op":"netns","name":"h0","ino":4026532001,"mnt":812,"pin":77,"alias":"nsrun:star"}`,
	`{"seq":9,"pos":"s:1:1","op":"proc","ns":"h0","name":"d","pid":4242,"start":123456789,"path":"/run/nsrun/x/log"}`,
	`{"seq":9,"pos":"s:1:1","op":"link","name":"vx","kind":"vxlan","vni":42,"on":"m1","away":true}`,
	`{"seq":9,"pos":"s:1:1","op":"link","name":"vx","away":false}`,
	`{"seq":2,"pos":"","op":"up","name":"a","old":"","new":"up"}`,
	// Left to the decoder.
	`{"seq":7,"op":"addr","addr":""}`,
	`{"seq":7,"op":"addr","addr":"nonsense"}`,
	`{"seq":1,"op":"netns","name":"caf\u00e9"}`,
	`{"seq":1,"op":"netns","name":"café"}`,
	`{"seq":1,"op":"netns","name":"a\"b"}`,
	`{"seq":1,"op":"netns","name":"a\\b"}`,
	`{"seq":1,"op":"netns","name":null}`,
	`{"seq":01,"op":"netns"}`,
	`{"seq":-1,"op":"netns"}`,
	`{"seq":1.0,"op":"netns"}`,
	`{"seq":1e2,"op":"netns"}`,
	`{"seq":"1","op":"netns"}`,
	`{"SEQ":1,"Op":"netns"}`,
	`{"seq":1,"op":"netns","extra":"x"}`,
	`{"seq":1, "op":"netns"}`,
	`{ "seq":1,"op":"netns"}`,
	`{"seq":1,"op":"netns",}`,
	`{"seq":1,"op":"netns"}{"op":"x"}`,
	`{"seq":1},"op":"x"}`,
	`{"seq":1,"op":"route","ns":"h0","route":{"family":4,"via":"10.0.0.1"}}`,
	`{"seq":1,"op":"proc","cmd":{"argv":["a","b"]}}`,
	`{"seq":1,"op":"link","away":1}`,
	`{"seq":1,"op":"link","away":"true"}`,
	`{"seq":1,"op":"link","pid":1234567890123456789}`,
	`{"seq":1,"op":"link","ino":18446744073709551615}`,
	`{"seq":1,"op":"netns","name":"a	b"}`,
	`{"seq":1,"op":"netns","seq":2}`,
	`{"seq":1,"op":"netns","op":3}`,
	`{}`,
	`{"":"x"}`,
	`{"op"}`,
	`{"op":}`,
	`{"op":"x`,
	`null`,
	`[]`,
	`"op"`,
}

// TestFlatRecord: what flatRecord reads, it reads as json.Unmarshal does,
// and it reads the records runs write.
func TestFlatRecord(t *testing.T) {
	read := 0
	for _, l := range flatLines {
		if flatAgrees(t, []byte(l+"\n")) {
			read++
		}
	}
	if read < 9 {
		t.Errorf("flatRecord read %d of the %d lines written as runs write them", read, 9)
	}
	// A journal as a run writes it reads line for line without the
	// decoder, but for its done records.
	for _, seed := range journalSeeds(t) {
		sc := bufio.NewScanner(bytes.NewReader(seed))
		for sc.Scan() {
			line := append(sc.Bytes(), '\n')
			if _, done := doneRecord(line); !done && !flatAgrees(t, line) && !bytes.Contains(line, []byte(`"route"`)) {
				t.Errorf("flatRecord left a flat record to the decoder: %s", line)
			}
		}
	}
}

// flatAgrees checks flatRecord against json.Unmarshal on one line, and
// reports whether flatRecord read it.
func flatAgrees(t testing.TB, line []byte) bool {
	var flat Step
	if !flatRecord(line, &flat) {
		return false
	}
	var want Step
	if err := json.Unmarshal(line, &want); err != nil {
		t.Errorf("flatRecord read %q, which json.Unmarshal refuses: %v", line, err)
		return true
	}
	if !reflect.DeepEqual(flat, want) {
		t.Errorf("%q: flatRecord read %+v, json.Unmarshal %+v", line, flat, want)
	}
	return true
}

func FuzzFlatRecord(f *testing.F) {
	for _, l := range flatLines {
		f.Add([]byte(l + "\n"))
	}
	for _, seed := range journalSeeds(f) {
		for l := range bytes.Lines(seed) {
			f.Add(l)
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		flatAgrees(t, line)
	})
}
