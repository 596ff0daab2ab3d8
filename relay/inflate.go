package relay

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"sync"
)

// A SPDY peer compresses all its header blocks as one zlib stream and
// sync-flushes it at the end of each block, so between blocks the whole
// state of the stream is its window: the last 32 KiB it produced, starting
// with the SPDY dictionary. spdystream's Framer keeps a flate reader per
// connection for that (≈41 KiB: the window and the Huffman tables), twice
// per session; idle sessions were mostly that. zstream keeps only the bytes
// the peer has sent so far (a few hundred for a port-forward session) and
// decodes each block with a pooled flate reader primed with them: the
// same output, without a reader per direction.
//
// Written by hand because neither compress/zlib nor spdystream can hand a
// stream's state back between blocks. The one thing a stateful reader
// accepts and this does not is a header block that does not end on a sync
// flush (a peer that splits a deflate block across frames, or ends the zlib
// stream): no Go peer does (spdystream flushes after every block) and such
// a block is refused.

const (
	windowSize = 32 << 10
	// maxBlockOut bounds one inflated header block: the most a block the
	// parser accepts can hold (count, then maxHeaderCount names and values
	// of at most maxHeaderField bytes with their lengths).
	maxBlockOut = 4 + maxHeaderCount*(8+2*maxHeaderField)
)

var (
	// errNotFlushed: the block does not end on a sync flush, so the next
	// block would continue inside this one's deflate block.
	errNotFlushed = errors.New("header block does not end with a zlib sync flush")
	// errStreamEnded: the block ends the zlib stream (a final deflate block);
	// no later block could be read.
	errStreamEnded = errors.New("header block ends its zlib stream")
	// errCorrupt: the block does not inflate. A stateful reader may still
	// take the frame if its header entries come before the bad bytes, which
	// it leaves for the next block to trip on.
	errCorrupt     = errors.New("header block does not inflate")
	errBlockTooBig = fmt.Errorf("header block inflates to more than %d bytes", maxBlockOut)
)

// syncMarker ends a sync-flushed deflate segment: an empty stored block.
var syncMarker = []byte{0x00, 0x00, 0xff, 0xff}

// zstream is one direction's header compression context between blocks.
type zstream struct {
	hist    []byte // what the stream has produced, the last windowSize bytes
	started bool   // the zlib header has been read
	dict    bool   // the stream was started with the SPDY dictionary
}

// inflater is a pooled flate reader with its input and buffers.
type inflater struct {
	src bytes.Reader
	fr  io.ReadCloser
	win []byte
	out []byte
}

var inflaters = sync.Pool{New: func() any {
	in := &inflater{win: make([]byte, 0, windowSize+len(spdyDictionary)), out: make([]byte, 0, 512)}
	in.fr = flate.NewReader(&in.src) // a bytes.Reader is a ByteReader: no bufio
	return in
}}

// inflate decodes one header block. The result is valid until release is
// called, which the caller must do.
func (z *zstream) inflate(block []byte) (out []byte, release func(), err error) {
	if !z.started {
		if block, err = z.readZlibHeader(block); err != nil {
			return nil, nil, err
		}
	}
	if !bytes.HasSuffix(block, syncMarker) {
		return nil, nil, errNotFlushed
	}
	in := inflaters.Get().(*inflater)
	release = func() {
		if cap(in.out) > 4*windowSize {
			in.out = nil // a rare big block: do not keep its buffer
		}
		inflaters.Put(in)
	}
	win := z.hist
	if z.dict && len(z.hist) < windowSize {
		// The dictionary is still in the window, before the history.
		win = append(append(in.win[:0], spdyDictionary...), z.hist...)
		win = win[max(0, len(win)-windowSize):]
	}
	in.src.Reset(block)
	if err := in.fr.(flate.Resetter).Reset(&in.src, win); err != nil {
		release()
		return nil, nil, err
	}
	out = in.out[:0]
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := in.fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		in.out = out
		switch {
		case len(out) > maxBlockOut:
			release()
			return nil, nil, errBlockTooBig
		case err == nil:
			continue
		case errors.Is(err, io.ErrUnexpectedEOF) && in.src.Len() == 0:
			// The input ended between deflate blocks, after the marker.
		case err == io.EOF:
			release()
			return nil, nil, errStreamEnded
		default:
			release()
			return nil, nil, fmt.Errorf("%w: %w", errCorrupt, err)
		}
		break
	}
	z.remember(out)
	return out, release, nil
}

// readZlibHeader checks the stream's RFC 1950 header as compress/zlib does
// and returns the rest of the block.
func (z *zstream) readZlibHeader(block []byte) ([]byte, error) {
	if len(block) < 2 {
		return nil, io.ErrUnexpectedEOF
	}
	cmf, flg := block[0], block[1]
	if cmf&0x0f != 8 || cmf>>4 > 7 || (uint16(cmf)<<8|uint16(flg))%31 != 0 {
		return nil, zlib.ErrHeader
	}
	block = block[2:]
	if flg&0x20 != 0 {
		if len(block) < 4 {
			return nil, io.ErrUnexpectedEOF
		}
		if !bytes.Equal(block[:4], dictID[:]) {
			return nil, zlib.ErrDictionary
		}
		block, z.dict = block[4:], true
	}
	z.started = true
	return block, nil
}

// remember appends a block's output to the window. Until the window is
// full it grows like any slice (an idle port-forward session's is a few
// hundred bytes); then it is one windowSize buffer that slides.
func (z *zstream) remember(out []byte) {
	if len(out) >= windowSize {
		out = out[len(out)-windowSize:]
	}
	if len(z.hist)+len(out) <= windowSize {
		if len(z.hist)+len(out) > cap(z.hist) {
			h := make([]byte, len(z.hist), min(max(2*cap(z.hist), len(z.hist)+len(out)), windowSize))
			copy(h, z.hist)
			z.hist = h
		}
		z.hist = append(z.hist, out...)
		return
	}
	if cap(z.hist) < windowSize {
		h := make([]byte, len(z.hist), windowSize)
		copy(h, z.hist)
		z.hist = h
	}
	drop := len(z.hist) + len(out) - windowSize
	n := copy(z.hist, z.hist[drop:])
	z.hist = append(z.hist[:n], out...)
}

// errBlockTrailing: inflated bytes after the block's last entry.
var errBlockTrailing = errors.New("header block has bytes after its last entry")
