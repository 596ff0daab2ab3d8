package relay

import (
	"bytes"
	"compress/zlib"
	"errors"
	"hash/adler32"
	"net/http"
	"strings"
	"testing"

	"github.com/moby/spdystream/spdy"
)

func TestDictionary(t *testing.T) {
	var id [4]byte
	sum := adler32.Checksum(spdyDictionary)
	id[0], id[1], id[2], id[3] = byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)
	if id != dictID {
		t.Fatalf("adler32 of the copied dictionary is % x, spdystream's blocks name % x", id, dictID)
	}
}

// zlibBlocks compresses blocks as one stream with the SPDY dictionary,
// sync-flushed after each, as spdystream's writer does.
func zlibBlocks(t *testing.T, level int, blocks ...[]byte) [][]byte {
	var buf bytes.Buffer
	w, err := zlib.NewWriterLevelDict(&buf, level, spdyDictionary)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, b := range blocks {
		start := buf.Len()
		_, _ = w.Write(b)
		_ = w.Flush()
		out = append(out, bytes.Clone(buf.Bytes()[start:]))
	}
	return out
}

func TestZstream(t *testing.T) {
	// Later blocks refer back into earlier ones and into the dictionary.
	plain := [][]byte{
		headerBlock(pairHeaders(kindError, "8080", 0)),
		headerBlock(pairHeaders(kindData, "8080", 0)),
		headerBlock(pairHeaders(kindError, "8080", 1)),
		headerBlock(http.Header{"A": {strings.Repeat("x", 40000)}}), // past the window
		headerBlock(pairHeaders(kindData, "8080", 1)),
	}
	for _, level := range []int{zlib.BestSpeed, zlib.BestCompression} {
		var z zstream
		for i, b := range zlibBlocks(t, level, plain...) {
			out, release, err := z.inflate(b)
			if err != nil {
				t.Fatalf("level %d block %d: %v", level, i, err)
			}
			if !bytes.Equal(out, plain[i]) {
				t.Fatalf("level %d block %d: inflated %q, want %q", level, i, out, plain[i])
			}
			release()
			if len(z.hist) > windowSize || cap(z.hist) > windowSize {
				t.Fatalf("history len %d cap %d", len(z.hist), cap(z.hist))
			}
		}
	}
	// Idle, a session keeps what its peer sent, not a reader's 41 KiB.
	var z zstream
	for _, b := range zlibBlocks(t, zlib.BestCompression, plain[:3]...) {
		_, release, err := z.inflate(b)
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	if n, sent := cap(z.hist), len(plain[0])+len(plain[1])+len(plain[2]); n > 2*sent {
		t.Fatalf("history holds %d bytes after three blocks of %d", n, sent)
	}
}

func TestZstreamRefuses(t *testing.T) {
	good := zlibBlocks(t, zlib.BestCompression, headerBlock(pairHeaders(kindError, "8080", 0)))[0]
	var final bytes.Buffer
	w, _ := zlib.NewWriterLevelDict(&final, zlib.BestSpeed, spdyDictionary)
	_, _ = w.Write([]byte("abc"))
	_ = w.Flush()
	_ = w.Close()
	bomb := zlibBlocks(t, zlib.BestCompression, make([]byte, maxBlockOut+1))[0]
	for _, tt := range []struct {
		name  string
		block []byte
		want  error
	}{
		{"no sync flush", good[:len(good)-1], errNotFlushed},
		{"stream ended", append(bytes.Clone(final.Bytes()), syncMarker...), errStreamEnded},
		{"bomb", bomb, errBlockTooBig},
		{"bad header", append([]byte{0x78, 0xbc}, good[2:]...), zlib.ErrHeader},
		{"other dictionary", append([]byte{0x78, 0xbb, 1, 2, 3, 4}, good[6:]...), zlib.ErrDictionary},
		{"corrupt", append([]byte{0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2, 0xff, 0xff}, syncMarker...), errCorrupt},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var z zstream
			if _, _, err := z.inflate(tt.block); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// A block with bytes after its entries is refused by the decoder.
	blk := zlibBlocks(t, zlib.BestSpeed, append(headerBlock(http.Header{"A": {"b"}}), 0))[0]
	frame := appendControlHeader(nil, typeSynReply, 0, 4+len(blk))
	frame = append(append(frame, 0, 0, 0, 1), blk...)
	if _, err := newDecoder().decode(frame); !errors.Is(err, errBlockTrailing) {
		t.Fatalf("trailing bytes: got %v", err)
	}
	var se *spdy.Error
	frame = appendControlHeader(nil, typeSynReply, 0, 4+len(good))
	frame = append(append(frame, 0, 0, 0, 0), good...)
	if _, err := newDecoder().decode(frame); !errors.As(err, &se) || se.Err != spdy.ZeroStreamId {
		t.Fatalf("stream id 0: got %v", err)
	}
}

// BenchmarkDecodeSynStream is the cost of a stream's header block.
func BenchmarkDecodeSynStream(b *testing.B) {
	var blocks [][]byte
	var buf bytes.Buffer
	w, _ := spdy.NewFramer(&buf, nil)
	for i := range b.N {
		start := buf.Len()
		_ = w.WriteFrame(&spdy.SynStreamFrame{StreamId: spdy.StreamId(2*i + 1), Headers: pairHeaders(kindData, "8080", i)})
		blocks = append(blocks, buf.Bytes()[start:])
	}
	d := newDecoder()
	b.ReportAllocs()
	b.ResetTimer()
	for _, f := range blocks {
		if _, err := d.decode(f); err != nil {
			b.Fatal(err)
		}
	}
}
