package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/moby/spdystream/spdy"
)

// Header blocks are zlib streams, one per direction of a connection, and
// each side's stream is its own: a block read from the client can never be
// copied to the kubelet. Every header-bearing frame read is therefore
// decoded (in order, even if dropped) and every one written is encoded anew.

// dictID is the Adler-32 of SPDY/3's header dictionary, which a zlib stream
// names in its header when it was compressed with it (RFC 1950 FDICT).
// spdystream's dictionary is unexported; TestDictID checks this value
// against a block written by its Framer.
var dictID = [4]byte{0xe3, 0xc6, 0xa7, 0xc2}

// zlibHeader is CMF=deflate/32K window, FLG=FDICT with a valid check.
var zlibHeader = [2]byte{0x78, 0xbb}

// storedEncoder writes header blocks as uncompressed ("stored") deflate
// blocks, each followed by an empty stored block (the sync-flush marker).
// Written by hand because spdystream's Framer compresses at
// BestCompression (≈800 KiB per connection at its first header frame,
// ≈700 KiB even at NoCompression) and issues several writes per frame;
// stored blocks need no window, so the only state is whether the zlib
// header has been sent. The marker matters: without it Go's flate reader
// looks for the next block header inside the same frame and fails.
type storedEncoder struct{ started bool }

func (e *storedEncoder) appendBlock(b, block []byte) []byte {
	if !e.started {
		b = append(b, zlibHeader[:]...)
		b = append(b, dictID[:]...)
		e.started = true
	}
	for len(block) > 0 {
		n := min(len(block), 0xffff)
		b = append(b, 0x00, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		b = append(b, block[:n]...)
		block = block[n:]
	}
	return append(b, 0x00, 0x00, 0x00, 0xff, 0xff)
}

// appendSynStream appends a SYN_STREAM frame for id with headers h.
func (e *storedEncoder) appendSynStream(b []byte, id, assoc uint32, flags, pri, slot byte, h http.Header) []byte {
	block := e.appendBlock(make([]byte, 0, 128), headerBlock(h))
	b = appendControlHeader(b, typeSynStream, flags, 10+len(block))
	b = binary.BigEndian.AppendUint32(b, id&maxStreamID)
	b = binary.BigEndian.AppendUint32(b, assoc&maxStreamID)
	b = append(b, pri<<5, slot)
	return append(b, block...)
}

// appendSynReply appends a SYN_REPLY frame for id with headers h.
func (e *storedEncoder) appendSynReply(b []byte, id uint32, flags byte, h http.Header) []byte {
	block := e.appendBlock(make([]byte, 0, 64), headerBlock(h))
	b = appendControlHeader(b, typeSynReply, flags, 4+len(block))
	b = binary.BigEndian.AppendUint32(b, id&maxStreamID)
	return append(b, block...)
}

// decoder parses one side's control frames. Frames without a header block
// go to spdystream's own Framer, so they are read exactly as the kubelet or
// client-go would read them; header-bearing frames are read by
// decodeHeaders, which does what the Framer does (same checks, same
// frames) with one zlib context that costs nothing while idle (zstream).
type decoder struct {
	src frameSource
	f   *spdy.Framer // never given a header block, so it never builds its zlib reader
	z   zstream
}

func newDecoder() *decoder {
	d := &decoder{}
	// The Framer keeps the reader it was built with, so it is one stable
	// object pointed at each frame in turn.
	d.f, _ = spdy.NewFramerWithOptions(nil, &d.src,
		spdy.WithMaxControlFramePayloadSize(maxControlPayload),
		spdy.WithMaxHeaderCount(maxHeaderCount),
		spdy.WithMaxHeaderFieldSize(maxHeaderField))
	return d
}

var errTrailing = errors.New("control frame longer than its content")

// decode parses frame, one whole control frame (header included).
func (d *decoder) decode(frame []byte) (spdy.Frame, error) {
	if len(frame) >= headerLen && isControl(frame) {
		switch controlType(frame) {
		case typeSynStream, typeSynReply, typeHeaders:
			return d.decodeHeaders(frame)
		}
	}
	d.src.b = frame
	f, err := d.f.ReadFrame()
	if err != nil {
		return nil, truncated(err)
	}
	if len(d.src.b) != 0 {
		return nil, errTrailing
	}
	return f, nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated control frame: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// frameSource is a reader over one frame's bytes.
type frameSource struct{ b []byte }

func (s *frameSource) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}
