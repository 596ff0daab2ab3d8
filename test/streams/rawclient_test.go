package streams

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"
)

// createTimeout is client-go's createStreamResponseTimeout
// (k8s.io/streaming/pkg/httpstream/spdy/connection.go).
const createTimeout = 30 * time.Second

// rawClient is a hand-driven SPDY port-forward client: the HTTP upgrade
// done by hand and a bare spdystream connection, so a case can send any
// headers in any order and see every reply, reset and byte.
type rawClient struct {
	t      *testing.T
	e      *env
	conn   *spdystream.Connection
	tc     *tapConn
	wire   *wire
	served chan struct{} // Serve returned: the connection is over
	closed sync.Once

	// createTimeout is how long create waits for a reply; client-go's
	// 30 s unless a case needs a failure sooner.
	createTimeout time.Duration

	mu      sync.Mutex
	log     []string // what the client observed, in script order
	streams []*spdystream.Stream
}

// dialRaw upgrades a connection to pod's portforward endpoint on e's path.
func dialRaw(t *testing.T, e *env, pod string) *rawClient {
	t.Helper()
	u, cfg := e.target(pod)
	conn, err := tls.Dial("tcp", u.Host, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"+
		"X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n", u.Path, u.Host)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		t.Fatalf("upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Stream-Protocol-Version") != "portforward.k8s.io" {
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		t.Fatalf("upgrade: %s %v %s", resp.Status, resp.Header, body)
	}
	c := &rawClient{t: t, e: e, wire: newWire(false), served: make(chan struct{}), createTimeout: createTimeout}
	c.tc = &tapConn{Conn: conn, r: br, w: c.wire}
	if c.conn, err = spdystream.NewConnection(c.tc, false); err != nil {
		t.Fatal(err)
	}
	go func() { c.conn.Serve(spdystream.NoOpStreamHandler); close(c.served) }()
	t.Cleanup(c.close)
	return c
}

// close ends the connection abruptly (TCP close, no GOAWAY) and waits for
// Serve; cases that test a graceful close do it themselves first.
func (c *rawClient) close() {
	c.closed.Do(func() {
		c.wire.closing()
		c.tc.Close()
		// Unblock frame workers stuck on DATA nobody will read (a failed
		// case); the RST frames this writes fail on the closed connection.
		c.mu.Lock()
		for _, s := range c.streams {
			_ = s.Reset()
		}
		c.mu.Unlock()
		select {
		case <-c.served:
		case <-time.After(10 * time.Second):
			c.t.Errorf("spdystream Serve still running 10s after the connection closed")
		}
	})
}

func (c *rawClient) logf(format string, args ...any) {
	c.mu.Lock()
	c.log = append(c.log, c.e.names.Replace(fmt.Sprintf(format, args...)))
	c.mu.Unlock()
}

// readUntil reads s until what it has read ends with suffix, for error
// streams the kubelet writes to but never ends (creation timeouts,
// duplicates), and logs the text.
func (c *rawClient) readUntil(s *spdystream.Stream, label, suffix string) {
	c.t.Helper()
	var mu sync.Mutex
	var got []byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := s.Read(buf)
			mu.Lock()
			got = append(got, buf[:n]...)
			end := strings.HasSuffix(string(got), suffix)
			mu.Unlock()
			if end || err != nil {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
	}
	mu.Lock()
	text := maskConn(string(got))
	mu.Unlock()
	if !strings.HasSuffix(text, suffix) {
		// Not fatal: the case goes on so that its transcript shows why.
		c.t.Errorf("%s: got %q after 20s or at its end, want a text ending with %q", label, text, suffix)
	}
	c.logf("%s: %q", label, text)
}

// hdr builds stream headers; "-" leaves a header out.
func hdr(streamType, port, requestID string) http.Header {
	h := http.Header{}
	for k, v := range map[string]string{"streamType": streamType, "port": port, "requestID": requestID} {
		if v != "-" {
			h.Set(k, v)
		}
	}
	return h
}

// create opens a stream and waits for its reply as client-go does, and
// logs the outcome under label.
func (c *rawClient) create(label string, h http.Header) (*spdystream.Stream, error) {
	s, err := c.conn.CreateStream(h, nil, false)
	if s != nil {
		c.mu.Lock()
		c.streams = append(c.streams, s)
		c.mu.Unlock()
	}
	if err == nil {
		err = s.WaitTimeout(c.createTimeout)
	}
	if err != nil {
		c.logf("create %s: %v", label, err)
		return nil, err
	}
	c.logf("create %s: ok", label)
	return s, nil
}

// mustCreate is create for streams the case needs to go on.
func (c *rawClient) mustCreate(label string, h http.Header) *spdystream.Stream {
	c.t.Helper()
	s, err := c.create(label, h)
	if err != nil {
		c.t.Fatalf("create %s: %v", label, err)
	}
	return s
}

// fwd is one forwarded connection: an error and a data stream.
type fwd struct {
	c           *rawClient
	requestID   string
	errS, dataS *spdystream.Stream
	errText     chan []byte // the error stream's bytes once it ends
}

// open does what client-go's handleConnection does before copying: create
// the error stream, half-close it, start reading it to its end, then
// create the data stream. A failed creation is logged and returned.
func (c *rawClient) open(port, requestID string) (*fwd, error) {
	f := &fwd{c: c, requestID: requestID, errText: make(chan []byte, 1)}
	var err error
	if f.errS, err = c.create("error "+requestID, hdr("error", port, requestID)); err != nil {
		return nil, err
	}
	if err := f.errS.Close(); err != nil {
		c.t.Fatalf("close error stream: %v", err)
	}
	// Read at once, as client-go does: spdystream's frame worker blocks on
	// a stream's unread DATA, stalling every stream of its partition.
	go func() { b, _ := io.ReadAll(f.errS); f.errText <- b }()
	if f.dataS, err = c.create("data "+requestID, hdr("data", port, requestID)); err != nil {
		return f, err
	}
	return f, nil
}

// mustOpen is open for connections the case needs to go on.
func (c *rawClient) mustOpen(port, requestID string) *fwd {
	c.t.Helper()
	f, err := c.open(port, requestID)
	if err != nil {
		c.t.Fatalf("open %s: %v", requestID, err)
	}
	return f
}

// errorText waits for the error stream's end (FIN or reset) and logs the
// text.
func (f *fwd) errorText() string {
	f.c.t.Helper()
	msg := string(recv(f.c.t, f.errText, 20*time.Second, "the end of error stream "+f.requestID))
	f.c.logf("error stream %s: %q", f.requestID, maskConn(msg))
	return msg
}

// readAll reads s to its end (FIN or reset) and returns the bytes.
func (c *rawClient) readAll(s *spdystream.Stream, what string) []byte {
	c.t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() { b, err := io.ReadAll(s); ch <- res{b, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			c.t.Fatalf("read %s: %v", what, r.err)
		}
		return r.b
	case <-time.After(20 * time.Second):
		// Not fatal: the case goes on so that its transcript shows why.
		c.t.Errorf("%s: no end after 20s", what)
		c.logf("%s: no end after 20s", what)
		return nil
	}
}

// waitClosed waits for the server to end the connection.
func (c *rawClient) waitClosed(d time.Duration) {
	c.t.Helper()
	select {
	case <-c.served:
		c.logf("connection closed by the server")
	case <-time.After(d):
		c.t.Fatalf("connection still open after %v", d)
	}
}

// result closes the connection and returns the transcript and log.
func (c *rawClient) result() result {
	c.close()
	c.mu.Lock()
	defer c.mu.Unlock()
	return result{frames: decodeWire(c.wire, c.e.names), log: append([]string(nil), c.log...)}
}

// result is what one run of a case produced on one path.
type result struct {
	frames transcript
	log    []string
}

func (r result) String() string {
	return "log:\n  " + strings.Join(r.log, "\n  ") + "\nframes:\n" + string(r.frames)
}

func maskConn(s string) string { return connPointer.ReplaceAllString(s, "conn=PTR") }

// isReset reports spdystream's "Stream reset" (a RST_STREAM instead of a
// reply).
func isReset(err error) bool { return errors.Is(err, spdystream.ErrReset) }

// port is a container port as a header value.
func port(p int32) string { return strconv.Itoa(int(p)) }

// send writes b in 32 KiB writes (one DATA frame each), as client-go's
// io.Copy does.
func send(t testing.TB, s *spdystream.Stream, b []byte) {
	t.Helper()
	if _, err := io.CopyBuffer(struct{ io.Writer }{s}, bytes.NewReader(b), make([]byte, 32<<10)); err != nil {
		t.Fatalf("write to stream: %v", err)
	}
}

// readN reads exactly n bytes of s.
func readN(t testing.TB, s *spdystream.Stream, n int) []byte {
	t.Helper()
	ch := make(chan []byte, 1)
	go func() {
		b := make([]byte, n)
		m, _ := io.ReadFull(s, b)
		ch <- b[:m]
	}()
	return recv(t, ch, 20*time.Second, fmt.Sprintf("%d bytes", n))
}

// echo sends b on f's data stream, half-closes and logs what came back.
func echo(t *testing.T, c *rawClient, f *fwd, b []byte) {
	t.Helper()
	back := make(chan []byte, 1)
	go func() {
		all := make([]byte, len(b))
		n, _ := io.ReadFull(f.dataS, all)
		back <- all[:n]
	}()
	send(t, f.dataS, b)
	// Half-close only once the whole echo is back: after the FIN the
	// kubelet gives the echo 1 s (its linger) to drain, too short on a
	// loaded machine.
	got := recv(t, back, 20*time.Second, "the echo")
	if err := f.dataS.Close(); err != nil {
		t.Fatal(err)
	}
	got = append(got, c.readAll(f.dataS, "data stream "+f.requestID)...)
	c.logf("data stream %s: read %s then EOF", f.requestID, describe(got))
}
