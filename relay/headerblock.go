package relay

import (
	"encoding/binary"
	"io"
	"net/http"
	"strings"

	"github.com/moby/spdystream/spdy"
)

// decodeHeaders reads a SYN_STREAM, SYN_REPLY or HEADERS frame as
// spdystream's Framer does (readSynStreamFrame and its siblings, with the
// relay's limits), its header block inflated by the side's zstream.
func (d *decoder) decodeHeaders(frame []byte) (spdy.Frame, error) {
	typ := controlType(frame)
	// Version, type and length are unexported in spdystream's frames (no
	// one outside can read them); Flags is what the relay uses.
	cf := spdy.ControlFrameHeader{Flags: spdy.ControlFlags(frameFlags(frame))}
	if payloadLen(frame) > maxControlPayload {
		return nil, &spdy.Error{Err: spdy.InvalidControlFrame}
	}
	p := frame[headerLen:]
	fixed := 4
	if typ == typeSynStream {
		fixed = 10
	}
	switch {
	case len(p) < payloadLen(frame) || payloadLen(frame) < fixed:
		return nil, truncated(io.ErrUnexpectedEOF)
	case len(p) > payloadLen(frame):
		return nil, errTrailing
	}
	// The Framer reads the ids whole, reserved bit included.
	id := spdy.StreamId(binary.BigEndian.Uint32(p))
	out, release, err := d.z.inflate(p[fixed:])
	if err != nil {
		return nil, err
	}
	h, err := parseHeaderBlock(out, id)
	release()
	if err != nil {
		return nil, err
	}
	invalid := invalidRespHeaders
	if typ == typeSynStream || (typ == typeHeaders && id%2 == 0) {
		invalid = invalidReqHeaders
	}
	for k := range h {
		if invalid[k] {
			return nil, &spdy.Error{Err: spdy.InvalidHeaderPresent, StreamId: id}
		}
	}
	if id == 0 {
		return nil, &spdy.Error{Err: spdy.ZeroStreamId}
	}
	switch typ {
	case typeSynStream:
		return &spdy.SynStreamFrame{CFHeader: cf, StreamId: id,
			AssociatedToStreamId: spdy.StreamId(binary.BigEndian.Uint32(p[4:])),
			Priority:             p[8] >> 5, Slot: p[9], Headers: h}, nil
	case typeSynReply:
		return &spdy.SynReplyFrame{CFHeader: cf, StreamId: id, Headers: h}, nil
	}
	return &spdy.HeadersFrame{CFHeader: cf, StreamId: id, Headers: h}, nil
}

// spdystream's invalidReqHeaders and invalidRespHeaders (unexported).
var (
	invalidReqHeaders  = map[string]bool{"Connection": true, "Host": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true}
	invalidRespHeaders = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true}
)

// parseHeaderBlock is spdystream's parseHeaderValueBlock over an inflated
// block, quirks kept (names are canonicalised by Add, so the duplicate
// check only sees names CanonicalMIMEHeaderKey leaves alone), except that
// bytes after the last entry are refused: in a stateful reader they would
// become the start of the next block.
func parseHeaderBlock(b []byte, id spdy.StreamId) (http.Header, error) {
	next := func() (uint32, error) {
		if len(b) < 4 {
			if len(b) == 0 {
				// The Framer's binary.Read at the end of the block: io.EOF,
				// which it reports as a wrong payload size.
				return 0, &spdy.Error{Err: spdy.WrongCompressedPayloadSize}
			}
			return 0, truncated(io.ErrUnexpectedEOF)
		}
		v := binary.BigEndian.Uint32(b)
		b = b[4:]
		return v, nil
	}
	field := func() (string, error) {
		n, err := next()
		switch {
		case err != nil:
			return "", err
		case n > maxHeaderField:
			return "", &spdy.Error{Err: spdy.InvalidControlFrame, StreamId: id}
		case uint32(len(b)) < n:
			return "", truncated(io.ErrUnexpectedEOF)
		}
		s := string(b[:n])
		b = b[n:]
		return s, nil
	}
	count, err := next()
	if err != nil {
		return nil, err
	}
	if count > maxHeaderCount {
		return nil, &spdy.Error{Err: spdy.InvalidControlFrame, StreamId: id}
	}
	var e error
	h := make(http.Header, int(count))
	for range count {
		name, err := field()
		if err != nil {
			return nil, err
		}
		if lower := strings.ToLower(name); lower != name {
			e, name = &spdy.Error{Err: spdy.UnlowercasedHeaderName, StreamId: id}, lower
		}
		if h[name] != nil {
			e = &spdy.Error{Err: spdy.DuplicateHeaders, StreamId: id}
		}
		value, err := field()
		if err != nil {
			return nil, err
		}
		for _, v := range strings.Split(value, "\x00") {
			h.Add(name, v)
		}
	}
	if e != nil {
		return nil, e
	}
	if len(b) != 0 {
		return nil, errBlockTrailing
	}
	return h, nil
}
