package relay

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/spdystream/spdy"
)

// splitFrames cuts b at the lengths its frame headers give, with the
// control bit set on each: what the read loop hands the decoder, which is
// only ever whole control frames. A short tail is left out.
func splitFrames(b []byte) [][]byte {
	b = bytes.Clone(b)
	var out [][]byte
	for len(b) >= headerLen && len(b) >= headerLen+payloadLen(b) {
		n := headerLen + payloadLen(b)
		b[0] |= 0x80
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// wholeFrame makes b one whole control frame: its length field is set to
// what follows the header.
func wholeFrame(b []byte) []byte {
	b = bytes.Clone(b)
	if len(b) > 0 {
		b[0] |= 0x80
	}
	if n := len(b) - headerLen; n >= 0 && n < 1<<24 {
		b[5], b[6], b[7] = byte(n>>16), byte(n>>8), byte(n)
	}
	return b
}

// withinLimits says, conservatively, whether a frame spdystream decoded
// with its default limits also fits the relay's: every block entry yields
// at least one value, and no entry is longer than its name's joined values.
func withinLimits(f spdy.Frame, payload int) bool {
	if payload > maxControlPayload {
		return false
	}
	var h http.Header
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		h = f.Headers
	case *spdy.SynReplyFrame:
		h = f.Headers
	case *spdy.HeadersFrame:
		h = f.Headers
	}
	n := 0
	for k, vs := range h {
		n += len(vs)
		if len(k) > maxHeaderField || len(strings.Join(vs, "\x00")) > maxHeaderField {
			return false
		}
	}
	return n <= maxHeaderCount
}

// sameFrame compares decoded frames as their users can: spdystream's
// ControlFrameHeader keeps version, type and length unexported, and the
// relay's header-frame decoder sets only Flags.
func sameFrame(a, b spdy.Frame) bool {
	return reflect.DeepEqual(visible(a), visible(b))
}

func visible(f spdy.Frame) spdy.Frame {
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		c := *f
		c.CFHeader = spdy.ControlFrameHeader{Flags: f.CFHeader.Flags}
		return &c
	case *spdy.SynReplyFrame:
		c := *f
		c.CFHeader = spdy.ControlFrameHeader{Flags: f.CFHeader.Flags}
		return &c
	case *spdy.HeadersFrame:
		c := *f
		c.CFHeader = spdy.ControlFrameHeader{Flags: f.CFHeader.Flags}
		return &c
	}
	return f
}

// decodeAgainstFramer decodes frames in order with the relay's decoder and
// with a default spdy.Framer reading their concatenation, until the relay
// fails (where the relay ends its session).
func decodeAgainstFramer(t *testing.T, frames [][]byte) {
	rd := bytes.NewReader(bytes.Join(frames, nil))
	ref, _ := spdy.NewFramer(nil, rd)
	dec := newDecoder()
	for i, fr := range frames {
		got, err := dec.decode(fr)
		if len(fr) >= headerLen && payloadLen(fr) > maxControlPayload {
			// Over the relay's limit, where spdystream's default would
			// allocate for up to 16 MiB: the relay must refuse it unread.
			if err == nil {
				t.Fatalf("frame %d: the relay accepted %d payload bytes", i, payloadLen(fr))
			}
			return
		}
		before := rd.Len()
		want, rerr := ref.ReadFrame()
		// The Framer accepts fr only if it read exactly fr, a whole frame.
		refOK := rerr == nil && before-rd.Len() == len(fr) && len(fr) >= headerLen && len(fr) == headerLen+payloadLen(fr)
		switch {
		case err == nil && !refOK:
			t.Fatalf("frame %d (% x): the relay accepted %#v; spdy.Framer: %v, read %d of %d bytes", i, fr[:min(len(fr), 32)], got, rerr, before-rd.Len(), len(fr))
		case err == nil && !sameFrame(got, want):
			t.Fatalf("frame %d: the relay decoded %#v, spdy.Framer %#v", i, got, want)
		case err != nil && refOK && withinLimits(want, len(fr)-headerLen) && !stricterThanFramer(err):
			t.Fatalf("frame %d (% x): the relay refused (%v) a frame spdy.Framer accepts within the relay's limits: %#v", i, fr[:min(len(fr), 32)], err, want)
		case err != nil:
			return
		}
	}
}

// FuzzDecoder gives arbitrary bytes to the relay's control-frame decoder,
// as one frame (its length field made to match, as decode is only ever
// given whole frames) and as the sequence of frames their headers delimit:
// it must not panic, and must decode exactly what spdystream's Framer
// decodes wherever the relay's tighter limits allow.
func FuzzDecoder(f *testing.F) {
	var enc storedEncoder
	syns := enc.appendSynStream(nil, 1, 0, 0, 0, 0, pairHeaders(kindError, "8080", 0))
	syns = enc.appendSynStream(syns, 3, 0, 0, 0, 0, pairHeaders(kindData, "8080", 0))
	var sb bytes.Buffer
	w, _ := spdy.NewFramer(&sb, nil)
	_ = w.WriteFrame(&spdy.SynStreamFrame{StreamId: 1, Headers: pairHeaders(kindError, "8080", 0)})
	_ = w.WriteFrame(&spdy.SynStreamFrame{StreamId: 3, Headers: pairHeaders(kindData, "8080", 0)})
	_ = w.WriteFrame(&spdy.SynReplyFrame{StreamId: 1, Headers: http.Header{}})
	_ = w.WriteFrame(&spdy.HeadersFrame{StreamId: 3, Headers: http.Header{"A": {"b"}}})
	_ = w.WriteFrame(&spdy.SettingsFrame{FlagIdValues: []spdy.SettingsFlagIdValue{{Id: spdy.SettingsInitialWindowSize, Value: 1 << 16}}})
	_ = w.WriteFrame(&spdy.WindowUpdateFrame{StreamId: 1, DeltaWindowSize: 1})
	for _, s := range [][]byte{
		syns,
		sb.Bytes(),
		appendPing(appendRst(appendGoAway(nil, 3), 1, rstCancel), 1),
		appendControlHeader(nil, 10, 0, 0),                                // CREDENTIAL: unknown to spdystream
		appendControlHeader(nil, typeSynStream, 0, 2),                     // shorter than its fixed fields
		append(appendControlHeader(nil, typeSettings, 0, 12), 0, 0, 0, 9), // more settings than room
		append(appendControlHeader(nil, typeSynReply, 0, 9), 0, 0, 0, 1, 0x78, 0xbb, 0, 0, 0),
		append(appendControlHeader(nil, typeSynStream, 0, maxControlPayload+1), make([]byte, 16)...),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeAgainstFramer(t, [][]byte{wholeFrame(data)})
		decodeAgainstFramer(t, splitFrames(data))
	})
}

// stricterThanFramer says whether the relay refused a header block that a
// stateful zlib reader could still read, but only by leaving its stream
// inside a deflate block, ended, or with bytes (inflatable or not) for the
// next block (see zstream). That peers' real blocks are all read is
// FuzzHeaderCodec's job, with spdystream's own writer.
func stricterThanFramer(err error) bool {
	return errors.Is(err, errNotFlushed) || errors.Is(err, errStreamEnded) || errors.Is(err, errBlockTrailing) || errors.Is(err, errCorrupt)
}
