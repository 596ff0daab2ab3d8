package upgrade

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
)

// keyedFrame is a client frame masked with key.
func keyedFrame(b0 byte, payload []byte, key [4]byte) []byte {
	f := maskedFrame(b0&0x80 != 0, b0&0x7f, payload)
	f[0] = b0
	h := len(f) - len(payload)
	copy(f[h-4:h], key[:])
	for i := range payload {
		f[h+i] ^= key[i&3]
	}
	return f
}

// ctlLog records what a wsReader asked its connection to answer.
type ctlLog []string

func (l *ctlLog) onPing(p []byte)            { *l = append(*l, "ping "+string(p)) }
func (l *ctlLog) onPong()                    { *l = append(*l, "pong") }
func (l *ctlLog) onClose(code int)           { *l = append(*l, fmt.Sprint("close ", code)) }
func (l *ctlLog) onProtocolError(why string) { *l = append(*l, "protocol error: "+why) }
func (l *ctlLog) String() string             { return strings.Join(*l, "; ") }
func (l *ctlLog) equal(want []string) bool   { return strings.Join(want, "; ") == l.String() }

func TestWSReader(t *testing.T) {
	k := [4]byte{0x12, 0x34, 0x56, 0x78}
	bin := func(fin bool, p string) []byte {
		b0 := byte(gwebsocket.BinaryMessage)
		if fin {
			b0 |= 0x80
		}
		return keyedFrame(b0, []byte(p), k)
	}
	cont := func(fin bool, p string) []byte {
		b0 := byte(0)
		if fin {
			b0 |= 0x80
		}
		return keyedFrame(b0, []byte(p), k)
	}
	ctl := func(op byte, p []byte) []byte { return keyedFrame(0x80|op, p, k) }
	closeNormal := ctl(gwebsocket.CloseMessage, []byte{0x03, 0xe8})
	big := strings.Repeat("0123456789abcdef", 5000) // a 64-bit length
	mid := strings.Repeat("x", 300)                 // a 16-bit length
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	unmasked := []byte{0x82, 0x02, 'h', 'i'}

	for _, tc := range []struct {
		name    string
		raw     []byte
		want    string
		err     string // "" for io.EOF
		control []string
	}{
		{"one message", cat(bin(true, "hello"), closeNormal), "hello", "", []string{"close 1000"}},
		{"fragmented, pings between", cat(bin(false, "frag"), ctl(gwebsocket.PingMessage, []byte("p1")), cont(false, "men"), ctl(gwebsocket.PongMessage, nil), cont(true, "ted"), closeNormal),
			"fragmented", "", []string{"ping p1", "pong", "close 1000"}},
		{"text skipped", cat(keyedFrame(0x01, []byte("te"), k), cont(true, "xt"), bin(true, "bin"), closeNormal), "bin", "", []string{"close 1000"}},
		{"lengths of 16 and 64 bits", cat(bin(true, mid), bin(true, big), closeNormal), mid + big, "", []string{"close 1000"}},
		{"empty frames", cat(bin(false, ""), cont(true, ""), bin(true, "a"), closeNormal), "a", "", []string{"close 1000"}},
		{"close without status", cat(bin(true, "a"), ctl(gwebsocket.CloseMessage, nil)), "a", "", []string{"close 1005"}},
		{"close going away", ctl(gwebsocket.CloseMessage, []byte{0x03, 0xe9, 'b', 'y', 'e'}), "", "", []string{"close 1001"}},
		{"close with an error", cat(bin(true, "a"), ctl(gwebsocket.CloseMessage, []byte{0x03, 0xf3, 'o', 'o', 'p', 's'})), "a", "websocket: close 1011 (internal server error): oops", []string{"close 1011"}},
		{"close inside a message", cat(bin(false, "cut"), closeNormal), "cut", "websocket: close 1000 (normal)", []string{"close 1000"}},
		{"close inside a text message", cat(keyedFrame(0x01, []byte("dropped"), k), closeNormal), "", "", []string{"close 1000"}},
		{"bytes after the close are not read", cat(closeNormal, bin(true, "late")), "", "", []string{"close 1000"}},
		{"unmasked", cat(bin(true, "ok"), unmasked), "ok", "websocket: bad MASK", []string{"protocol error: bad MASK"}},
		{"RSV bits", keyedFrame(0xc2, []byte("x"), k), "", "websocket: RSV bits set", []string{"protocol error: RSV bits set"}},
		{"control too long", ctl(gwebsocket.PingMessage, bytes.Repeat([]byte{1}, 126)), "", "websocket: len > 125 for control", []string{"protocol error: len > 125 for control"}},
		{"control fragmented", keyedFrame(gwebsocket.PingMessage, []byte("p"), k), "", "websocket: FIN not set on control", []string{"protocol error: FIN not set on control"}},
		{"continuation first", cont(true, "x"), "", "websocket: continuation after FIN", []string{"protocol error: continuation after FIN"}},
		{"message inside a message", cat(bin(false, "a"), bin(true, "b")), "a", "websocket: data before FIN", []string{"protocol error: data before FIN"}},
		{"bad opcode", keyedFrame(0x83, nil, k), "", "websocket: bad opcode 3", []string{"protocol error: bad opcode 3"}},
		{"every fault named", []byte{0x73, 0x05}, "", "websocket: RSV bits set, bad opcode 3, bad MASK", nil},
		{"64-bit length too large", append([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, k[:]...), "", "websocket: 64-bit length with the most significant bit set", nil},
		{"bad close code", ctl(gwebsocket.CloseMessage, []byte{0x03, 0xed}), "", "websocket: bad close code 1005", []string{"protocol error: bad close code 1005"}},
		{"close text not UTF-8", ctl(gwebsocket.CloseMessage, []byte{0x03, 0xe8, 0xff}), "", "websocket: invalid utf8 payload in close frame", nil},
		{"one-byte close: no status, as gorilla", ctl(gwebsocket.CloseMessage, []byte{0x03}), "", "", []string{"close 1005"}},
		{"end inside a frame", bin(true, "truncated")[:10], "trun", io.ErrUnexpectedEOF.Error(), nil},
		{"end without a close", bin(true, "abc"), "abc", io.ErrUnexpectedEOF.Error(), nil},
	} {
		for _, sizes := range [][]int{{1}, {2, 5}, {3, 1, 14}, {7}, {4096}, {1 << 20}} {
			for _, timeouts := range []bool{false, true} {
				for _, pLen := range []int{1, 5, 512, 1 << 17} {
					name := fmt.Sprintf("%s/chunks%v/timeouts=%v/p=%d", tc.name, sizes, timeouts, pLen)
					var log ctlLog
					r := newWSReader(&chunkReader{data: tc.raw, chunks: sizes, timeouts: timeouts}, &log)
					var got []byte
					var err error
					buf := make([]byte, pLen)
					for reads := 0; ; reads++ {
						if reads > 10*len(tc.raw)+10 {
							t.Fatalf("%s: no end after %d reads", name, reads)
						}
						var n int
						n, err = r.Read(buf)
						got = append(got, buf[:n]...)
						if errors.Is(err, os.ErrDeadlineExceeded) {
							continue // resumable
						}
						if err != nil {
							break
						}
						if n == 0 {
							t.Fatalf("%s: Read returned 0 and no error", name)
						}
					}
					if string(got) != tc.want {
						t.Errorf("%s: read %q, want %q", name, trim(got), trim([]byte(tc.want)))
					}
					if tc.err == "" {
						if err != io.EOF {
							t.Errorf("%s: err %v, want io.EOF", name, err)
						}
					} else if err == nil || err.Error() != tc.err {
						t.Errorf("%s: err %v, want %q", name, err, tc.err)
					}
					if tc.control != nil && !log.equal(tc.control) {
						t.Errorf("%s: answered %q, want %q", name, log.String(), tc.control)
					}
					if n, err2 := r.Read(buf); n != 0 || !errors.Is(err2, err) && err2 != err {
						t.Errorf("%s: a read after the end gave %d, %v; want 0, %v", name, n, err2, err)
					}
				}
			}
		}
	}
}

func trim(b []byte) []byte {
	if len(b) > 40 {
		return append(b[:40:40], "…"...)
	}
	return b
}

// onceThenBlock returns b, then fails the test if read again.
type onceThenBlock struct {
	t    *testing.T
	b    []byte
	done bool
}

func (o *onceThenBlock) Read(p []byte) (int, error) {
	if o.done {
		o.t.Fatal("read on after a whole message: it would wait for the client's next one")
	}
	o.done = true
	return copy(p, o.b), nil
}

// A Read with bytes returns at the end of a message, and reads on inside one.
func TestWSReaderStopsBetweenMessages(t *testing.T) {
	k := [4]byte{1, 2, 3, 4}
	var log ctlLog
	r := newWSReader(&onceThenBlock{t: t, b: keyedFrame(0x82, []byte("whole"), k)}, &log)
	buf := make([]byte, 1024)
	if n, err := r.Read(buf); err != nil || string(buf[:n]) != "whole" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	msg := append(keyedFrame(0x02, []byte("first half, "), k), keyedFrame(0x80, []byte("second half"), k)...)
	r = newWSReader(&chunkReader{data: msg, chunks: []int{5}}, &log)
	if n, err := r.Read(buf); err != nil || string(buf[:n]) != "first half, second half" {
		t.Fatalf("Read = %q, %v; want the whole message in one Read", buf[:n], err)
	}
}

func TestUnmaskTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 100 {
		for pos := range 4 {
			for shift := range 10 { // dst this many bytes before src
				key := [4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
				buf := make([]byte, shift+n)
				for i := range buf {
					buf[i] = byte(rng.Uint32())
				}
				want := make([]byte, n)
				for i := range want {
					want[i] = buf[shift+i] ^ key[(pos+i)&3]
				}
				next := unmaskTo(buf[:n], buf[shift:], key, pos)
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("n=%d pos=%d shift=%d: wrong bytes", n, pos, shift)
				}
				if next != (pos+n)&3 {
					t.Fatalf("n=%d pos=%d: next %d", n, pos, next)
				}
			}
		}
	}
}

// clientStream is size bytes of binary messages of msgLen bytes, each in
// client-go's 4 KiB masked frames.
func clientStream(size, msgLen int) []byte {
	var raw []byte
	payload := bytes.Repeat([]byte{0xa5}, msgLen)
	key := [4]byte{9, 8, 7, 6}
	for n := 0; n < size; n += msgLen {
		for p := 0; p < msgLen; p += 4096 {
			b0 := byte(0)
			if p == 0 {
				b0 = gwebsocket.BinaryMessage
			}
			if p+4096 >= msgLen {
				b0 |= 0x80
			}
			raw = append(raw, keyedFrame(b0, payload[p:min(p+4096, msgLen)], key)...)
		}
	}
	return raw
}

// BenchmarkWSRead reads client-go's upload (32 KiB messages in 4 KiB
// frames, 16 KiB at a time as crypto/tls hands them out) into a relay-sized
// buffer, with wsReader and, for comparison, gorilla's reader.
func BenchmarkWSRead(b *testing.B) {
	raw := clientStream(1<<20, 32<<10+8)
	buf := make([]byte, 64<<10)
	b.Run("wsReader", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		var log ctlLog
		for range b.N {
			r := newWSReader(&chunkReader{data: raw, chunks: []int{16 << 10}}, &log)
			for {
				if _, err := r.Read(buf); err != nil {
					break
				}
			}
		}
	})
	b.Run("gorilla", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for range b.N {
			b.StopTimer()
			ws := gorillaOver(b, &chunkReader{data: raw, chunks: []int{16 << 10}})
			b.StartTimer()
			for {
				_, r, err := ws.NextReader()
				if err != nil {
					break
				}
				for {
					if _, err := r.Read(buf); err != nil {
						break
					}
				}
			}
		}
	})
}

// gorillaOver is gorilla's server side of a tunnel upgraded the way the
// proxy does it (newUpgrader), reading rd; what it writes is dropped.
func gorillaOver(tb testing.TB, rd io.Reader) *gwebsocket.Conn {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	ws, err := newUpgrader(tunnelPrefix+"portforward.k8s.io").Upgrade(&hijacker{conn: memConn{rd}}, req, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return ws
}

// memConn reads rd and drops writes.
type memConn struct{ rd io.Reader }

func (c memConn) Read(p []byte) (int, error)       { return c.rd.Read(p) }
func (c memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c memConn) Close() error                     { return nil }
func (c memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c memConn) SetDeadline(time.Time) error      { return nil }
func (c memConn) SetReadDeadline(time.Time) error  { return nil }
func (c memConn) SetWriteDeadline(time.Time) error { return nil }

type hijacker struct {
	conn net.Conn
	h    http.Header
}

func (w *hijacker) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}
func (w *hijacker) Write(p []byte) (int, error) { return len(p), nil }
func (w *hijacker) WriteHeader(int)             {}
func (w *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

func BenchmarkUnmask(b *testing.B) {
	buf := make([]byte, 4096+14)
	b.SetBytes(4096)
	for range b.N {
		unmaskTo(buf[:4096], buf[14:], [4]byte{1, 2, 3, 4}, 1)
	}
}
