package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/moby/spdystream/spdy"
)

// fuzzInput reads fuzz bytes as a stream of choices. Past the end every
// choice is 0, so every input decodes to something.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) more() bool { return len(in.b) > 0 }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *fuzzInput) uint32() uint32 {
	return uint32(in.byte())<<24 | uint32(in.byte())<<16 | uint32(in.byte())<<8 | uint32(in.byte())
}

// text draws a string of at most limit bytes, each mapped through char: a
// literal of up to 127 bytes, or (high bit set) a unit of 1–8 bytes
// repeated to up to 8 KiB, so that small inputs reach the relay's limits.
// The input it consumes does not depend on limit.
func (in *fuzzInput) text(limit int, char func(byte) byte) string {
	limit = max(limit, 0)
	c := in.byte()
	var b []byte
	if c&0x80 == 0 {
		for range int(c) {
			if ch := char(in.byte()); len(b) < limit {
				b = append(b, ch)
			}
		}
		return string(b)
	}
	unit := make([]byte, 1+int(c&7))
	for i := range unit {
		unit[i] = char(in.byte())
	}
	n := min(int(in.byte())<<5|int(c>>3&0x0f), limit)
	for len(b) < n {
		b = append(b, unit...)
	}
	return string(b[:n])
}

// tokenChars are the lower-case characters of an RFC 9110 token.
const tokenChars = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"

func tokenChar(c byte) byte { return tokenChars[int(c)%len(tokenChars)] }

// valueChar keeps any byte but NUL, spdystream's value separator.
func valueChar(c byte) byte { return max(c, 1) }

// headerSet draws up to maxHeaderCount distinct headers whose fields fit
// maxHeaderField and whose block fits room bytes.
func (in *fuzzInput) headerSet(room int) http.Header {
	h := http.Header{}
	size := 4
	for range int(in.byte()) % (maxHeaderCount + 1) {
		left := room - size - 8 // for this header's name and values
		name := in.text(min(maxHeaderField, left), tokenChar)
		if name == "" {
			name = "x"
		}
		limit := min(maxHeaderField, left-len(name)) // for the joined values
		var vals []string
		joined := -1 // separators included
		for range 1 + int(in.byte()%4) {
			v := in.text(limit-joined-1, valueChar)
			if joined+1+len(v) > limit {
				break
			}
			vals = append(vals, v)
			joined += 1 + len(v)
		}
		key := http.CanonicalHeaderKey(name)
		if _, dup := h[key]; dup || len(vals) == 0 {
			continue
		}
		h[key] = vals
		size += 8 + len(name) + joined
	}
	return h
}

// codecFrame is one header-bearing frame, as generated and as decoded.
type codecFrame struct {
	typ              uint16 // typeSynStream, typeSynReply or typeHeaders
	id, assoc        uint32
	flags, pri, slot byte
	h                http.Header
}

// codecRoom bounds a generated header block so that the frame, zlib
// framing included (stored or spdystream's deflate), fits maxControlPayload.
const codecRoom = maxControlPayload - 64

func (in *fuzzInput) codecFrames() []codecFrame {
	var fs []codecFrame
	for len(fs) == 0 || (in.more() && len(fs) < 16) {
		fr := codecFrame{typ: []uint16{typeSynStream, typeSynReply, typeHeaders}[in.byte()%3]}
		// Id 0 fails decoding and spdystream's writer refuses it.
		fr.id = max(in.uint32()&maxStreamID, 1)
		fr.flags = in.byte()
		if fr.typ == typeSynStream {
			fr.assoc = in.uint32() & maxStreamID
			fr.pri = in.byte() & 7
			fr.slot = in.byte()
		}
		fr.h = in.headerSet(codecRoom)
		fs = append(fs, fr)
	}
	return fs
}

// rejected says whether spdystream refuses fr for a hop-by-hop header
// (its invalidReqHeaders / invalidRespHeaders; HEADERS picks the set by id
// parity).
func (fr codecFrame) rejected() bool {
	req := fr.typ == typeSynStream || (fr.typ == typeHeaders && fr.id%2 == 0)
	if req && fr.h["Host"] != nil {
		return true
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding"} {
		if fr.h[k] != nil {
			return true
		}
	}
	return false
}

// appendHeadersFrame appends a HEADERS frame; the relay never writes one,
// but its peers may.
func appendHeadersFrame(b []byte, e *storedEncoder, id uint32, flags byte, h http.Header) []byte {
	block := e.appendBlock(nil, headerBlock(h))
	b = appendControlHeader(b, typeHeaders, flags, 4+len(block))
	b = binary.BigEndian.AppendUint32(b, id)
	return append(b, block...)
}

func (fr codecFrame) appendStored(b []byte, e *storedEncoder) []byte {
	switch fr.typ {
	case typeSynStream:
		return e.appendSynStream(b, fr.id, fr.assoc, fr.flags, fr.pri, fr.slot, fr.h)
	case typeSynReply:
		return e.appendSynReply(b, fr.id, fr.flags, fr.h)
	}
	return appendHeadersFrame(b, e, fr.id, fr.flags, fr.h)
}

// spdy is fr for spdystream's writer.
func (fr codecFrame) spdy() spdy.Frame {
	cf := spdy.ControlFrameHeader{Flags: spdy.ControlFlags(fr.flags)}
	id := spdy.StreamId(fr.id)
	switch fr.typ {
	case typeSynStream:
		return &spdy.SynStreamFrame{CFHeader: cf, StreamId: id, AssociatedToStreamId: spdy.StreamId(fr.assoc), Priority: fr.pri, Slot: fr.slot, Headers: fr.h}
	case typeSynReply:
		return &spdy.SynReplyFrame{CFHeader: cf, StreamId: id, Headers: fr.h}
	}
	return &spdy.HeadersFrame{CFHeader: cf, StreamId: id, Headers: fr.h}
}

// check compares a decoded frame (or error) with fr.
func (fr codecFrame) check(got spdy.Frame, err error) error {
	if fr.rejected() {
		var se *spdy.Error
		if !errors.As(err, &se) || se.Err != spdy.InvalidHeaderPresent {
			return fmt.Errorf("got %v, want %q", err, spdy.InvalidHeaderPresent)
		}
		return nil
	}
	if err != nil {
		return err
	}
	var dec codecFrame
	switch f := got.(type) {
	case *spdy.SynStreamFrame:
		dec = codecFrame{typeSynStream, uint32(f.StreamId), uint32(f.AssociatedToStreamId), byte(f.CFHeader.Flags), f.Priority, f.Slot, f.Headers}
	case *spdy.SynReplyFrame:
		dec = codecFrame{typ: typeSynReply, id: uint32(f.StreamId), flags: byte(f.CFHeader.Flags), h: f.Headers}
	case *spdy.HeadersFrame:
		dec = codecFrame{typ: typeHeaders, id: uint32(f.StreamId), flags: byte(f.CFHeader.Flags), h: f.Headers}
	default:
		return fmt.Errorf("decoded a %T", got)
	}
	if !reflect.DeepEqual(dec, fr) {
		return fmt.Errorf("decoded %+v, want %+v", dec, fr)
	}
	return nil
}

// FuzzHeaderCodec round-trips sequences of header frames, all through one
// zlib stream per direction as on a connection: the relay's stored-block
// encoder read by spdystream's Framer and by the relay's decoder, and
// spdystream's writer (BestCompression) read by the relay's decoder.
func FuzzHeaderCodec(f *testing.F) {
	for _, s := range codecSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{b: data}
		frames := in.codecFrames()
		var enc storedEncoder
		var wire []byte
		for _, fr := range frames {
			wire = fr.appendStored(wire, &enc)
		}
		ref, _ := spdy.NewFramer(nil, bytes.NewReader(wire))
		dec := newDecoder()
		for i, fr := range frames {
			n := headerLen + payloadLen(wire)
			if n-headerLen > maxControlPayload {
				t.Fatalf("frame %d: the harness built %d payload bytes, over %d", i, n-headerLen, maxControlPayload)
			}
			a, aerr := ref.ReadFrame()
			if err := fr.check(a, aerr); err != nil {
				t.Fatalf("stored frame %d read by spdy.Framer: %v", i, err)
			}
			b, berr := dec.decode(wire[:n])
			if err := fr.check(b, berr); err != nil {
				t.Fatalf("stored frame %d read by the relay: %v", i, err)
			}
			if aerr == nil && !sameFrame(a, b) {
				t.Fatalf("frame %d: spdy.Framer read %+v, the relay %+v", i, a, b)
			}
			wire = wire[n:]
		}

		var buf bytes.Buffer
		w, _ := spdy.NewFramer(&buf, nil)
		for i, fr := range frames {
			if err := w.WriteFrame(fr.spdy()); err != nil {
				t.Fatalf("spdystream writing frame %d: %v", i, err)
			}
		}
		wire, dec = buf.Bytes(), newDecoder()
		for i, fr := range frames {
			n := headerLen + payloadLen(wire)
			if n-headerLen > maxControlPayload || n > len(wire) {
				t.Fatalf("spdystream frame %d: %d payload bytes of %d", i, n-headerLen, len(wire)-headerLen)
			}
			got, err := dec.decode(wire[:n])
			if err := fr.check(got, err); err != nil {
				t.Fatalf("spdystream frame %d read by the relay: %v", i, err)
			}
			wire = wire[n:]
		}
	})
}

// codecScript is the inverse of codecFrames for seeds: literal names and
// values of under 128 bytes from the generators' alphabets.
func codecScript(frames ...codecFrame) []byte {
	var b []byte
	for _, fr := range frames {
		b = append(b, byte(slices.Index([]uint16{typeSynStream, typeSynReply, typeHeaders}, fr.typ)))
		b = binary.BigEndian.AppendUint32(b, fr.id)
		b = append(b, fr.flags)
		if fr.typ == typeSynStream {
			b = binary.BigEndian.AppendUint32(b, fr.assoc)
			b = append(b, fr.pri, fr.slot)
		}
		b = append(b, byte(len(fr.h)))
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range fr.h {
				if !yield(k) {
					return
				}
			}
		}) {
			b = append(b, byte(len(k)))
			for _, c := range []byte(strings.ToLower(k)) {
				b = append(b, byte(strings.IndexByte(tokenChars, c)))
			}
			b = append(b, byte(len(fr.h[k])-1))
			for _, v := range fr.h[k] {
				b = append(append(b, byte(len(v))), v...)
			}
		}
	}
	return b
}

func codecSeeds() [][]byte {
	errH, dataH := pairHeaders(kindError, "8080", 0), pairHeaders(kindData, "8080", 0)
	return [][]byte{
		// client-go's pair, the kubelet's replies, a half-close by HEADERS.
		codecScript(
			codecFrame{typ: typeSynStream, id: 1, h: errH},
			codecFrame{typ: typeSynReply, id: 1, h: http.Header{}},
			codecFrame{typ: typeSynStream, id: 3, h: dataH},
			codecFrame{typ: typeSynReply, id: 3, h: http.Header{}},
			codecFrame{typ: typeHeaders, id: 3, flags: flagFin, h: http.Header{}},
		),
		// Every field set, multi-valued and empty values.
		codecScript(codecFrame{typ: typeSynStream, id: maxStreamID, assoc: 7, flags: 3, pri: 7, slot: 255,
			h: http.Header{"A": {"1", "", "3"}, "B-C": {""}, "X~y": {"\xff\x01 v"}}}),
		// Headers spdystream refuses, then a frame it accepts.
		codecScript(
			codecFrame{typ: typeSynStream, id: 5, h: http.Header{"Host": {"h"}}},
			codecFrame{typ: typeSynReply, id: 5, h: http.Header{"Connection": {"close"}}},
			codecFrame{typ: typeHeaders, id: 2, h: http.Header{"Host": {"h"}}},
			codecFrame{typ: typeHeaders, id: 3, h: http.Header{"Host": {"h"}}},
		),
		// A 4 KiB value by repetition, at the field limit.
		{1, 0, 0, 0, 9, 0, 1, 1, 'v' - 'a', 0, 0x80 | 0x78, 'z', 0x80},
	}
}
