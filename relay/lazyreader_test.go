package relay

import (
	"bytes"
	"io"
	"testing"
)

// chunkReader returns src in chunks of at most size bytes and checks, on
// each read, that the FrameReader reads into its large buffer only while
// it holds unread bytes (a read into an empty buffer may block on an idle
// peer, so it must be a small one).
type chunkReader struct {
	t       *testing.T
	src     []byte
	size    int
	fr      *FrameReader
	bigHeld int // reads made while the large buffer was held
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.src) == 0 {
		return 0, io.EOF
	}
	if c.fr != nil {
		if c.fr.Buffered() == 0 && len(p) > smallBufSize {
			c.t.Errorf("read of %d bytes into an empty buffer", len(p))
		}
		if c.fr.big != nil {
			c.bigHeld++
		}
	}
	n := copy(p[:min(len(p), c.size)], c.src)
	c.src = c.src[n:]
	return n, nil
}

func TestFrameReader(t *testing.T) {
	var stream []byte
	var want [][]byte
	for _, n := range []int{0, 4, 100, smallBufSize - headerLen, smallBufSize, 4 << 10, 32 << 10, FrameBufSize - headerLen, 1} {
		f := appendData(nil, 1, 0, bytes.Repeat([]byte{byte(n)}, n))
		stream = append(stream, f...)
		want = append(want, f)
	}
	for _, tc := range []struct {
		name  string
		chunk int
	}{
		{"bytewise", 1},
		{"small chunks", 100},
		{"tls records", 16 << 10},
		{"whole", len(stream)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr := &chunkReader{t: t, src: stream, size: tc.chunk}
			fr := NewFrameReader(cr)
			cr.fr = fr
			defer fr.Release()
			for i, w := range want {
				h, err := fr.Peek(headerLen)
				if err != nil {
					t.Fatalf("frame %d: header: %v", i, err)
				}
				n := headerLen + payloadLen(h)
				f, err := fr.Peek(n)
				if err != nil {
					t.Fatalf("frame %d: Peek(%d): %v", i, n, err)
				}
				if !bytes.Equal(f, w) {
					t.Fatalf("frame %d: got %d bytes, want %d", i, len(f), len(w))
				}
				if d, err := fr.Discard(n); d != n || err != nil {
					t.Fatalf("frame %d: Discard = %d, %v", i, d, err)
				}
			}
			if _, err := fr.Peek(headerLen); err != io.EOF {
				t.Fatalf("Peek at the end: %v, want EOF", err)
			}
			if fr.big != nil {
				t.Error("the large buffer is held at the end")
			}
			if cr.bigHeld == 0 {
				t.Error("no read went to the large buffer: frames were read in small pieces")
			}
		})
	}
}

// TestFrameReaderRead covers Read and Discard past the buffer, as the
// relay's path for frames larger than the buffer uses them.
func TestFrameReaderRead(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789"), 20000)
	fr := NewFrameReader(&chunkReader{t: t, src: src, size: 3000})
	defer fr.Release()
	if _, err := fr.Peek(2000); err != nil {
		t.Fatal(err)
	}
	if d, err := fr.Discard(100000); d != 100000 || err != nil {
		t.Fatalf("Discard = %d, %v", d, err)
	}
	got, err := io.ReadAll(fr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src[100000:]) {
		t.Fatalf("read %d bytes, want the last %d", len(got), len(src)-100000)
	}
	if _, err := fr.Peek(FrameBufSize + 1); err == nil {
		t.Error("Peek beyond the buffer succeeded")
	}
}
