package upgrade

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
)

const (
	// fuzzTunnelMax bounds one input. The tunnel sets no read limit of its
	// own (gorilla streams each message through NextReader, so a large
	// message costs no memory), hence nothing to assert about one here.
	fuzzTunnelMax = 64 << 10
	// fuzzTunnelWait turns a hang into a failure instead of a stuck fuzzer.
	fuzzTunnelWait = 10 * time.Second
)

// tunnelServer upgrades every request the way the proxy does (newUpgrader,
// newWSConn without pings) and hands the server side over; one server
// serves a whole fuzz run.
func tunnelServer(f *testing.F) (url string, conns chan *wsConn) {
	conns = make(chan *wsConn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ws, err := newUpgrader(tunnelPrefix+"portforward.k8s.io").Upgrade(w, req, nil)
		if err != nil {
			return
		}
		conns <- newWSConn(ws, 0, 0)
	}))
	f.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), conns
}

// dialTunnel connects a real gorilla client (which masks its frames) with
// frames of at most frameSize payload bytes.
func dialTunnel(t *testing.T, url string, conns chan *wsConn, frameSize int) (*gwebsocket.Conn, *wsConn) {
	d := gwebsocket.Dialer{WriteBufferSize: frameSize, HandshakeTimeout: fuzzTunnelWait, Subprotocols: []string{tunnelPrefix + "portforward.k8s.io"}}
	client, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	select {
	case c := <-conns:
		return client, c
	case <-time.After(fuzzTunnelWait):
		t.Fatal("no server side")
	}
	return nil, nil
}

// readAll reads c to its end with read sizes cycling through sizes.
func readAll(c *wsConn, sizes []int) ([]byte, error) {
	var got []byte
	buf := make([]byte, 1<<16)
	for i := 0; ; i++ {
		n, err := c.Read(buf[:sizes[i%len(sizes)]])
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
		if n == 0 {
			return got, errors.New("Read returned 0 bytes and no error")
		}
	}
}

// FuzzTunnelFrames decodes the input into messages a real client sends:
// binary (possibly fragmented, with pings between fragments), text and ping.
// What wsConn reads, in any read sizes, must be exactly the binary payloads
// in order, then io.EOF after a normal close and an error after another.
//
// Input: frame size, close code, four read sizes, then ops of a kind byte
// and a 2-byte length followed by the payload.
func FuzzTunnelFrames(f *testing.F) {
	op := func(kind byte, payload []byte) []byte {
		return append(append([]byte{kind}, byte(len(payload)>>8), byte(len(payload))), payload...)
	}
	spdyFrame := []byte{0x80, 0x03, 0x00, 0x01, 0x01, 0x00, 0x00, 0x0a, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0} // a SYN_STREAM head
	big := bytes.Repeat([]byte("0123456789abcdef"), 1200)
	f.Add(append([]byte{0, 0, 0x40, 0x10, 0xff, 0x01}, op(0, spdyFrame)...))
	f.Add(append(append([]byte{1, 0, 7, 1, 200, 33}, op(0, []byte("hello"))...), op(1, []byte(" world"))...))
	f.Add(append(append(append([]byte{16, 1, 3, 5, 8, 13}, op(2, []byte("text is skipped"))...), op(0, big)...), op(3, []byte("ping"))...))
	f.Add(append(append([]byte{2, 2, 1, 1, 1, 1}, op(4, []byte("fragmented with pings between"))...), op(0, nil)...))
	f.Add([]byte{0, 3, 1, 2, 3, 4})
	url, conns := tunnelServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 6 || len(data) > fuzzTunnelMax {
			return
		}
		frameSize := 1 + int(data[0])*int(data[0])/8 // 1..8129 bytes per frame
		closeCode := []int{gwebsocket.CloseNormalClosure, gwebsocket.CloseGoingAway, gwebsocket.CloseNoStatusReceived, gwebsocket.CloseInternalServerErr}[data[1]%4]
		sizes := []int{1 + int(data[2])*64, 1 + int(data[3]), 1 + int(data[4])*16, 1 + int(data[5])}
		type msg struct {
			kind    byte
			payload []byte
		}
		var msgs []msg
		var want []byte
		for rest := data[6:]; len(rest) >= 3; {
			kind, n := rest[0]%5, int(binary.BigEndian.Uint16(rest[1:3]))
			rest = rest[3:]
			n = min(n, len(rest))
			msgs = append(msgs, msg{kind, rest[:n]})
			if kind <= 1 || kind == 4 {
				want = append(want, rest[:n]...)
			}
			rest = rest[n:]
		}

		client, server := dialTunnel(t, url, conns, frameSize)
		defer client.Close()
		defer server.Close()
		_ = server.SetReadDeadline(time.Now().Add(fuzzTunnelWait))
		// The client must read for gorilla to answer the server's close
		// and to take the server's pongs off the wire.
		go func() {
			for {
				if _, _, err := client.NextReader(); err != nil {
					return
				}
			}
		}()
		writeErr := make(chan error, 1)
		go func() {
			writeErr <- func() error {
				for _, m := range msgs {
					var err error
					switch m.kind {
					case 0, 1:
						err = client.WriteMessage(gwebsocket.BinaryMessage, m.payload)
					case 2:
						err = client.WriteMessage(gwebsocket.TextMessage, m.payload)
					case 3:
						err = client.WriteControl(gwebsocket.PingMessage, m.payload[:min(len(m.payload), 125)], time.Now().Add(fuzzTunnelWait))
					case 4:
						// One binary message written piecewise, a ping
						// between the pieces (control frames may come
						// between the frames of a message).
						w, err := client.NextWriter(gwebsocket.BinaryMessage)
						if err != nil {
							return err
						}
						for p := m.payload; len(p) > 0; {
							k := min(len(p), 1+len(p)/3)
							if _, err := w.Write(p[:k]); err != nil {
								return err
							}
							p = p[k:]
							if err := client.WriteControl(gwebsocket.PingMessage, []byte("x"), time.Now().Add(fuzzTunnelWait)); err != nil {
								return err
							}
						}
						err = w.Close()
					}
					if err != nil {
						return err
					}
				}
				return client.WriteControl(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(closeCode, ""), time.Now().Add(fuzzTunnelWait))
			}()
		}()

		got, err := readAll(server, sizes)
		if werr := <-writeErr; werr != nil {
			t.Fatalf("client write: %v", werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes, want the %d bytes of the binary messages (first difference at %d)", len(got), len(want), firstDiff(got, want))
		}
		if closeCode == gwebsocket.CloseInternalServerErr {
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("close %d: err %v, want a close error", closeCode, err)
			}
		} else if !errors.Is(err, io.EOF) {
			t.Fatalf("close %d: err %v, want io.EOF", closeCode, err)
		}
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// maskedFrame is a client frame with the zero masking key, so its payload
// stays readable for the fuzzer to mutate.
func maskedFrame(fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var h []byte
	switch n := len(payload); {
	case n < 126:
		h = []byte{b0, 0x80 | byte(n)}
	case n < 1<<16:
		h = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		h = binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, uint64(n))
	}
	return append(append(h, 0, 0, 0, 0), payload...)
}

// FuzzTunnelRaw writes arbitrary bytes as the client's side of an upgraded
// tunnel, then ends the connection. wsConn must neither panic nor hang, and
// never return more bytes than were sent.
func FuzzTunnelRaw(f *testing.F) {
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	closeNormal := maskedFrame(true, gwebsocket.CloseMessage, []byte{0x03, 0xe8})
	f.Add(cat(maskedFrame(true, gwebsocket.BinaryMessage, []byte("hello")), closeNormal))
	f.Add(cat(maskedFrame(false, gwebsocket.BinaryMessage, []byte("frag")), maskedFrame(true, gwebsocket.PingMessage, []byte("p")),
		maskedFrame(true, 0, []byte("mented")), maskedFrame(true, gwebsocket.TextMessage, []byte("skip")), closeNormal))
	f.Add(cat(maskedFrame(true, gwebsocket.BinaryMessage, bytes.Repeat([]byte{0xab}, 300)), maskedFrame(true, gwebsocket.CloseMessage, nil)))
	f.Add(maskedFrame(true, gwebsocket.BinaryMessage, bytes.Repeat([]byte{1}, 70000))[:200]) // a 64-bit length, truncated
	f.Add([]byte{0x82, 0x05, 'h', 'e', 'l', 'l', 'o'})                                       // unmasked: a protocol error
	f.Add(maskedFrame(true, gwebsocket.PingMessage, bytes.Repeat([]byte{2}, 126)))           // control frame too long
	f.Add(maskedFrame(true, gwebsocket.CloseMessage, []byte{0x03, 0xf3, 0xff}))              // close 1011, invalid UTF-8
	url, conns := tunnelServer(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > fuzzTunnelMax {
			return
		}
		client, server := dialTunnel(t, url, conns, 0)
		defer server.Close()
		conn := client.NetConn()
		defer conn.Close()
		_ = server.SetReadDeadline(time.Now().Add(fuzzTunnelWait))
		// Drain what the server sends back (pongs, its close) so its writes
		// never block on a full socket buffer.
		go func() { _, _ = io.Copy(io.Discard, conn) }()
		go func() {
			_, _ = conn.Write(raw)
			_ = conn.(*net.TCPConn).CloseWrite()
		}()
		got, err := readAll(server, []int{4096, 1, 777})
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("Read hung after the client's end: %v", err)
		}
		if len(got) > len(raw) {
			t.Fatalf("read %d bytes from %d sent", len(got), len(raw))
		}
	})
}

// gorillaReadAll is the tunnel's reader before wsReader, gorilla's
// NextReader, as the reference FuzzWSReader compares wsReader with.
func gorillaReadAll(ws *gwebsocket.Conn) ([]byte, error) {
	var got []byte
	buf := make([]byte, 4096)
	for {
		mt, r, err := ws.NextReader()
		if err != nil {
			if gwebsocket.IsCloseError(err, gwebsocket.CloseNormalClosure, gwebsocket.CloseGoingAway, gwebsocket.CloseNoStatusReceived) {
				return got, io.EOF
			}
			if err == io.EOF {
				// gorilla's skip of a message cut short by the
				// connection's end: no close frame came.
				return got, io.ErrUnexpectedEOF
			}
			return got, err
		}
		for mt == gwebsocket.BinaryMessage {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return got, err
			}
		}
	}
}

// FuzzWSReader reads arbitrary client bytes with wsReader, in read sizes
// and chunks the input chooses and with a timeout before every chunk, and
// with gorilla. Both must read the same payload bytes and agree on how the
// tunnel ended: io.EOF after a normal close, an error otherwise.
//
// Input: a read size, a chunk size, then the client's bytes.
func FuzzWSReader(f *testing.F) {
	for _, seed := range [][]byte{
		maskedFrame(true, gwebsocket.BinaryMessage, []byte("hello")),
		bytes.Join([][]byte{maskedFrame(false, gwebsocket.BinaryMessage, []byte("frag")), maskedFrame(true, gwebsocket.PingMessage, []byte("p")),
			maskedFrame(true, 0, []byte("mented")), maskedFrame(true, gwebsocket.TextMessage, []byte("skip")),
			maskedFrame(true, gwebsocket.CloseMessage, []byte{0x03, 0xe8})}, nil),
		maskedFrame(true, gwebsocket.BinaryMessage, bytes.Repeat([]byte{7}, 70000))[:300],
		append(maskedFrame(true, gwebsocket.BinaryMessage, bytes.Repeat([]byte{7}, 300)), maskedFrame(true, gwebsocket.CloseMessage, []byte{0x03, 0xf3, 'x'})...),
		{0x82, 0x05, 'h', 'e', 'l', 'l', 'o'},
	} {
		f.Add(byte(7), byte(3), seed)
	}
	f.Fuzz(func(t *testing.T, readSize, chunkSize byte, raw []byte) {
		if len(raw) > fuzzTunnelMax {
			return
		}
		want, wantErr := gorillaReadAll(gorillaOver(t, bytes.NewReader(raw)))
		var log ctlLog
		r := newWSReader(&chunkReader{data: raw, chunks: []int{1 + int(chunkSize)}, timeouts: true}, &log)
		var got []byte
		buf := make([]byte, 1+int(readSize)*int(readSize))
		var err error
		for reads := 0; ; reads++ {
			if reads > 4*len(raw)+4 {
				t.Fatalf("no end after %d reads", reads)
			}
			var n int
			n, err = r.Read(buf)
			got = append(got, buf[:n]...)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("wsReader read %d bytes, gorilla %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
		}
		if (err == io.EOF) != (wantErr == io.EOF) {
			t.Fatalf("wsReader ended with %v, gorilla with %v", err, wantErr)
		}
	})
}
