package upgrade

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// frame builds a SPDY data frame of n payload bytes for stream id.
func frame(id uint32, n int, fill byte) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint32(b, id&0x7fffffff)
	b[5], b[6], b[7] = byte(n>>16), byte(n>>8), byte(n)
	for i := 8; i < len(b); i++ {
		b[i] = fill
	}
	return b
}

// chunkReader returns its data in the given chunk sizes, cycling, then
// io.EOF; with timeouts, a read before each chunk times out.
type chunkReader struct {
	data     []byte
	chunks   []int
	i        int
	timeouts bool
	timedOut bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.timeouts && !r.timedOut {
		r.timedOut = true
		return 0, os.ErrDeadlineExceeded
	}
	r.timedOut = false
	n := r.chunks[r.i%len(r.chunks)]
	r.i++
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// writes records each Write call.
type writes struct{ calls [][]byte }

func (w *writes) Write(p []byte) (int, error) {
	w.calls = append(w.calls, append([]byte(nil), p...))
	return len(p), nil
}

func TestCopyFrames(t *testing.T) {
	big := frame(1, frameBufSize, 'b') // larger than the buffer once the header is added
	tests := []struct {
		name      string
		frames    [][]byte
		chunks    []int
		tail      []byte // a partial frame at the end
		wantCalls int    // -1: do not check
	}{
		{name: "should join a frame written as header pieces and data", frames: [][]byte{frame(1, 32<<10, 'a')}, chunks: []int{4, 4, 32 << 10}, wantCalls: 1},
		{name: "should batch complete frames already buffered", frames: [][]byte{frame(1, 10, 'a'), frame(3, 20, 'b'), frame(5, 0, 'c')}, chunks: []int{1 << 20}, wantCalls: 1},
		{name: "should relay byte-by-byte input whole", frames: [][]byte{frame(1, 100, 'a'), frame(3, 5, 'b')}, chunks: []int{1}, wantCalls: 2},
		{name: "should stream a frame larger than its buffer", frames: [][]byte{big, frame(3, 1, 'z')}, chunks: []int{16 << 10}, wantCalls: -1},
		{name: "should pass a partial frame through at EOF", frames: [][]byte{frame(1, 8, 'a')}, tail: frame(3, 100, 'x')[:50], chunks: []int{7}, wantCalls: -1},
		{name: "should pass a partial header through at EOF", frames: nil, tail: []byte{0, 0, 0}, chunks: []int{3}, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Join(tt.frames, nil)
			in = append(in, tt.tail...)
			w := &writes{}
			err := copyFrames(w, &chunkReader{data: in, chunks: tt.chunks})
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err %v", err)
			}
			if got := bytes.Join(w.calls, nil); !bytes.Equal(got, in) {
				t.Fatalf("relayed %d bytes, want %d identical", len(got), len(in))
			}
			if tt.wantCalls >= 0 && len(w.calls) != tt.wantCalls {
				t.Fatalf("%d writes, want %d", len(w.calls), tt.wantCalls)
			}
			// Every write but the last (a partial tail) ends on a frame boundary.
			if len(in) > frameBufSize {
				return // a frame larger than the buffer is streamed in pieces
			}
			for i, c := range w.calls[:max(0, len(w.calls)-1)] {
				if !wholeFrames(c) {
					t.Fatalf("write %d (%d bytes) splits a frame", i, len(c))
				}
			}
		})
	}
}

func wholeFrames(b []byte) bool {
	for len(b) >= 8 {
		n := spdyFrameLen(b)
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return len(b) == 0
}

// FuzzCopyFrames checks the frame relay never loses, adds or reorders a byte,
// whatever the input and however it is chunked.
func FuzzCopyFrames(f *testing.F) {
	f.Add(frame(1, 10, 'a'), uint8(3))
	f.Add(append(frame(1, 0, 0), 0x80, 3, 0, 1, 0, 0, 0, 4, 1, 2, 3, 4), uint8(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(8))
	f.Fuzz(func(t *testing.T, in []byte, seed uint8) {
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		chunks := make([]int, 8)
		for i := range chunks {
			chunks[i] = 1 + r.IntN(64)
		}
		w := &writes{}
		_ = copyFrames(w, &chunkReader{data: bytes.Clone(in), chunks: chunks})
		if got := bytes.Join(w.calls, nil); !bytes.Equal(got, in) {
			t.Fatalf("relayed %x, want %x", got, in)
		}
	})
}
