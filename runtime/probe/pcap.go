package probe

import (
	"bufio"
	"encoding/binary"
	"io"
	"time"
)

// The classic libpcap file format, as tcpdump -w writes it and tcpdump -r
// and Wireshark read it: a 24-byte global header, then each packet behind a
// 16-byte record header. Fields are in the writer's byte order, which
// readers detect from the magic number; timestamps are in microseconds.
const (
	pcapMagic        = 0xa1b2c3d4
	pcapVersionMajor = 2
	pcapVersionMinor = 4
	pcapSnaplen      = 262144 // tcpdump's default
	linktypeEthernet = 1
)

// pcapWriter writes a pcap stream.
type pcapWriter struct {
	w *bufio.Writer
}

func newPcapWriter(w io.Writer) (*pcapWriter, error) {
	p := &pcapWriter{w: bufio.NewWriter(w)}
	var h [24]byte
	binary.NativeEndian.PutUint32(h[0:], pcapMagic)
	binary.NativeEndian.PutUint16(h[4:], pcapVersionMajor)
	binary.NativeEndian.PutUint16(h[6:], pcapVersionMinor)
	// thiszone and sigfigs (h[8:16]) are 0, as every modern writer has them.
	binary.NativeEndian.PutUint32(h[16:], pcapSnaplen)
	binary.NativeEndian.PutUint32(h[20:], linktypeEthernet)
	_, err := p.w.Write(h[:])
	return p, err
}

// write adds a packet captured at ts; orig is its length on the wire, data
// what was captured of it (at most the snap length).
func (p *pcapWriter) write(ts time.Time, data []byte, orig int) error {
	if len(data) > pcapSnaplen {
		data = data[:pcapSnaplen]
	}
	var h [16]byte
	binary.NativeEndian.PutUint32(h[0:], uint32(ts.Unix()))
	binary.NativeEndian.PutUint32(h[4:], uint32(ts.Nanosecond()/1000))
	binary.NativeEndian.PutUint32(h[8:], uint32(len(data)))
	binary.NativeEndian.PutUint32(h[12:], uint32(orig))
	if _, err := p.w.Write(h[:]); err != nil {
		return err
	}
	_, err := p.w.Write(data)
	return err
}

func (p *pcapWriter) flush() error { return p.w.Flush() }
