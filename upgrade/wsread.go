package upgrade

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	gwebsocket "github.com/gorilla/websocket"
)

// wsReader reads the tunnel client's WebSocket frames (RFC 6455 §5): the
// payloads of binary messages, in order, unmasked in the caller's buffer.
// Writes stay with gorilla.
//
// Hand-written instead of gorilla's NextReader for two reasons, both
// measured (BENCHMARKS.md):
//   - gorilla keeps any read error for good, a timeout included, so a
//     tunnel's reader could not wait for an idle client with a small stack
//     as the relay's other readers do (relay.Conn.Idle); wsReader survives
//     a timeout anywhere, keeping what it has read of a frame;
//   - gorilla reads each frame's header through a buffer of its own, then
//     the payload, then unmasks it, and allocates per message: two reads
//     per 4 KiB frame of client-go's (one TLS record each). wsReader reads
//     whatever the TLS connection has decrypted straight into the relay's
//     buffer and drops the headers while it unmasks, in one pass.
type wsReader struct {
	rd  io.Reader
	ctl wsControl

	// The frame being read.
	hdr       [maxWSHeader + maxControlPayload]byte // a header, or a whole control frame, being gathered
	hn        int
	remaining int64 // payload bytes of the current data frame still to come
	key       [4]byte
	keyPos    int
	open      bool  // a message has started and its final frame has not
	text      bool  // the current (or last) message is text: skipped, as the tunnel is binary only
	err       error // for good: a close, a protocol error, the connection's end
}

const (
	maxWSHeader       = 2 + 8 + 4 // first bytes, 64-bit length, masking key
	maxControlPayload = 125
)

// wsControl answers the client's control frames; each runs on the reader's
// goroutine.
type wsControl interface {
	onPing(payload []byte)
	onPong()
	// onClose answers the client's close; code is 1005 when it sent none.
	onClose(code int)
	// onProtocolError tells the client why the gateway ends the tunnel.
	onProtocolError(reason string)
}

func newWSReader(rd io.Reader, ctl wsControl) *wsReader {
	return &wsReader{rd: rd, ctl: ctl}
}

// Read fills p with payload bytes. Like the gorilla-based reader before it,
// it reads on to the end of the current message (the client is writing it
// now) but does not wait for another message once it has bytes. A read
// that times out (os.ErrDeadlineExceeded) keeps the frame read so far: the
// next Read goes on from there.
func (r *wsReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.err == nil {
		if n > 0 && r.between() {
			return n, nil
		}
		m, err := r.rd.Read(p[n:])
		if m < 0 || m > len(p)-n {
			return n, errors.New("websocket: reader returned an invalid count")
		}
		n += r.decode(p[n : n+m])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n, err
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // no close frame
			}
			r.err = err
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, r.err
}

// between reports whether the reader stands between messages.
func (r *wsReader) between() bool { return r.hn == 0 && r.remaining == 0 && !r.open }

// decode turns the raw bytes b into payload bytes in place and returns how
// many it left at b's start: headers and control frames are taken out,
// text messages dropped.
func (r *wsReader) decode(b []byte) int {
	w, i := 0, 0
	for i < len(b) && r.err == nil {
		if r.remaining > 0 {
			k := int(min(r.remaining, int64(len(b)-i)))
			if !r.text {
				r.keyPos = unmaskTo(b[w:w+k], b[i:i+k], r.key, r.keyPos)
				w += k
			}
			i += k
			r.remaining -= int64(k)
			continue
		}
		need, prev := r.need(), r.hn
		k := copy(r.hdr[r.hn:need], b[i:])
		r.hn += k
		i += k
		if prev < 2 && r.hn >= 2 {
			// Checked as soon as they are here, as gorilla does: a
			// control frame's length must not make it gather more.
			if reason := r.check(r.hdr[0], r.hdr[1]); reason != "" {
				r.fail(reason)
				break
			}
		}
		if r.hn == need && r.need() == need {
			r.frame()
		}
	}
	return w
}

// need is how many bytes of r.hdr the frame being gathered takes, as far
// as the bytes at hand tell (it grows as they come).
func (r *wsReader) need() int {
	if r.hn < 2 {
		return 2
	}
	n := 2 + 4
	switch l := r.hdr[1] & 0x7f; l {
	case 126:
		n += 2
	case 127:
		n += 8
	default:
		if r.hdr[0]&0x08 != 0 { // a control frame: gathered whole
			n += int(l)
		}
	}
	return n
}

// frame acts on the gathered header (with a control frame's payload).
func (r *wsReader) frame() {
	h := r.hdr[:r.hn]
	fin, op := h[0]&0x80 != 0, h[0]&0x0f
	length, rest := int64(h[1]&0x7f), h[2:]
	switch length {
	case 126:
		length, rest = int64(binary.BigEndian.Uint16(rest)), rest[2:]
	case 127:
		u := binary.BigEndian.Uint64(rest)
		if u>>63 != 0 {
			r.fail("64-bit length with the most significant bit set")
			return
		}
		length, rest = int64(u), rest[8:]
	}
	copy(r.key[:], rest)
	r.keyPos = 0
	r.hn = 0
	if op&0x08 == 0 {
		if op != 0 {
			r.text = op == gwebsocket.TextMessage
		}
		r.open = !fin
		r.remaining = length
		return
	}
	payload := rest[4 : 4+length]
	unmaskTo(payload, payload, r.key, 0)
	switch op {
	case gwebsocket.PingMessage:
		r.ctl.onPing(payload)
	case gwebsocket.PongMessage:
		r.ctl.onPong()
	case gwebsocket.CloseMessage:
		r.closeFrame(payload)
	}
}

// check validates a frame's first two bytes as gorilla does, naming every
// fault.
func (r *wsReader) check(b0, b1 byte) string {
	var faults []string
	if b0&0x70 != 0 {
		faults = append(faults, "RSV bits set")
	}
	fin, op := b0&0x80 != 0, int(b0&0x0f)
	switch op {
	case gwebsocket.CloseMessage, gwebsocket.PingMessage, gwebsocket.PongMessage:
		if b1&0x7f > maxControlPayload {
			faults = append(faults, "len > 125 for control")
		}
		if !fin {
			faults = append(faults, "FIN not set on control")
		}
	case gwebsocket.TextMessage, gwebsocket.BinaryMessage:
		if r.open {
			faults = append(faults, "data before FIN")
		}
	case 0:
		if !r.open {
			faults = append(faults, "continuation after FIN")
		}
	default:
		faults = append(faults, fmt.Sprintf("bad opcode %d", op))
	}
	if b1&0x80 == 0 {
		faults = append(faults, "bad MASK")
	}
	if faults == nil {
		return ""
	}
	return strings.Join(faults, ", ")
}

func (r *wsReader) closeFrame(payload []byte) {
	code, text := gwebsocket.CloseNoStatusReceived, ""
	if len(payload) >= 2 {
		code, text = int(binary.BigEndian.Uint16(payload)), string(payload[2:])
		if !validCloseCode(code) {
			r.fail(fmt.Sprintf("bad close code %d", code))
			return
		}
		if !utf8.ValidString(text) {
			r.fail("invalid utf8 payload in close frame")
			return
		}
	} // one byte: no status, as gorilla reads it
	r.ctl.onClose(code)
	switch code {
	case gwebsocket.CloseNormalClosure, gwebsocket.CloseGoingAway, gwebsocket.CloseNoStatusReceived:
		if r.open && !r.text {
			// The message it cuts short is lost: not a clean end (a
			// text message is dropped anyway).
			r.err = &gwebsocket.CloseError{Code: code, Text: text}
			return
		}
		r.err = io.EOF
	default:
		r.err = &gwebsocket.CloseError{Code: code, Text: text}
	}
}

func (r *wsReader) fail(reason string) {
	r.ctl.onProtocolError(reason)
	r.err = errors.New("websocket: " + reason)
}

// validCloseCode is RFC 6455 §7.4's set of codes a peer may send.
func validCloseCode(code int) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011, code == 1012, code == 1013:
		return true
	}
	return false
}

// unmaskTo writes src XOR the masking key (from position pos) to dst, which
// may overlap src if it does not start after it, and returns the key's next
// position. Eight bytes at a time: the relay's whole upload passes here.
func unmaskTo(dst, src []byte, key [4]byte, pos int) int {
	var k [8]byte
	for j := range k {
		k[j] = key[(pos+j)&3]
	}
	k64 := binary.LittleEndian.Uint64(k[:])
	dst = dst[:len(src)]
	i := 0
	for ; i+32 <= len(src); i += 32 {
		// Each load comes before the store that could overlap it; the
		// fixed-size slices spare the bounds checks.
		s, d := src[i:i+32:i+32], dst[i:i+32:i+32]
		a := binary.LittleEndian.Uint64(s[0:8]) ^ k64
		b := binary.LittleEndian.Uint64(s[8:16]) ^ k64
		c := binary.LittleEndian.Uint64(s[16:24]) ^ k64
		e := binary.LittleEndian.Uint64(s[24:32]) ^ k64
		binary.LittleEndian.PutUint64(d[0:8], a)
		binary.LittleEndian.PutUint64(d[8:16], b)
		binary.LittleEndian.PutUint64(d[16:24], c)
		binary.LittleEndian.PutUint64(d[24:32], e)
	}
	for ; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:i+8], binary.LittleEndian.Uint64(src[i:i+8])^k64)
	}
	for ; i < len(src); i++ {
		dst[i] = src[i] ^ k[i&7]
	}
	return (pos + len(src)) & 3
}
