package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"
)

// kubeletPool is a fake kubelet listener: every connection the relay
// dials, the first one included, is served by spdystream with kb.
type kubeletPool struct {
	t  *testing.T
	ln net.Listener
	kb kubeletBehaviour

	mu    sync.Mutex
	conns []*spdystream.Connection
	raw   []net.Conn
	dials int
	fail  error // Redial answers this instead of dialing
	// firstW, if set, wraps the writer of the first connection dialed.
	firstW func(net.Conn) io.Writer
	wrap   func(net.Conn) net.Conn
	client *spdystream.Connection
}

func newKubeletPool(t *testing.T, kb kubeletBehaviour) *kubeletPool {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &kubeletPool{t: t, ln: ln, kb: kb}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.wrap != nil {
				c = p.wrap(c)
			}
			p.raw = append(p.raw, c)
			p.mu.Unlock()
			s, err := spdystream.NewConnection(c, true)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, s)
			p.mu.Unlock()
			go s.Serve(func(st *spdystream.Stream) { kb(st) })
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.raw {
			_ = c.Close()
		}
	})
	return p
}

// dial opens a relay Conn to the pool.
func (p *kubeletPool) dial(ctx context.Context) (Conn, error) {
	p.mu.Lock()
	p.dials++
	fail, wrap := p.fail, p.firstW
	if p.dials > 1 {
		wrap = nil
	}
	p.mu.Unlock()
	if fail != nil {
		return Conn{}, fail
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.ln.Addr().String())
	if err != nil {
		return Conn{}, err
	}
	var w io.Writer = c
	if wrap != nil {
		w = wrap(c)
	}
	return Conn{R: c, W: w, Close: c.Close, SetWriteDeadline: c.SetWriteDeadline, Node: "node-b"}, nil
}

func (p *kubeletPool) setFail(err error) { p.mu.Lock(); p.fail = err; p.mu.Unlock() }

func (p *kubeletPool) dialCount() int { p.mu.Lock(); defer p.mu.Unlock(); return p.dials }

// cut closes the kubelet end of every connection so far.
func (p *kubeletPool) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.raw {
		_ = c.Close()
	}
}

// startRedialRelay runs a relay from a spdystream client to the pool, with
// Redial dialing the pool. It returns the harness (its server is unused).
func startRedialRelay(t *testing.T, p *kubeletPool, o Options) *harness {
	t.Helper()
	h := &harness{t: t, end: make(chan End, 1), arrived: make(chan *spdystream.Stream, 64)}
	cc, gwc := tcpPair(t)
	first, err := p.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first.Node = "node-a"
	o.Record = func(r Record) { h.mu.Lock(); h.records = append(h.records, r); h.mu.Unlock() }
	if o.Redial == nil {
		o.Redial = p.dial
	}
	go func() {
		h.end <- Run(Conn{R: gwc, W: gwc, Close: gwc.Close, SetWriteDeadline: gwc.SetWriteDeadline}, first, o)
	}()
	if h.client, err = spdystream.NewConnection(cc, false); err != nil {
		t.Fatal(err)
	}
	go h.client.Serve(spdystream.NoOpStreamHandler)
	t.Cleanup(func() {
		_ = h.client.Close()
		_ = cc.Close()
		select {
		case <-h.end:
		case <-time.After(runBound):
			t.Error("relay did not end after the client closed")
		}
		waitRelayGone(t)
	})
	return h
}

// checkEcho runs one forwarded connection that echoes a payload.
func checkEcho(t *testing.T, h *harness, req int) {
	t.Helper()
	errS, data := h.forward("8080", req)
	// Read as client-go does: an unread stream blocks a spdystream worker.
	go func() { _, _ = io.Copy(io.Discard, errS) }()
	payload := randomBytes(t, 256<<10)
	if got := echoRoundTrip(t, data, payload); !bytes.Equal(got, payload) {
		t.Fatalf("echo: got %d bytes, want %d", len(got), len(payload))
	}
}

func sessionAlive(t *testing.T, h *harness) {
	t.Helper()
	select {
	case <-h.client.CloseChan():
		t.Fatal("the client's session ended")
	case end := <-h.end:
		t.Fatalf("the relay ended: %+v", end)
	default:
	}
}

// recordWith waits for the record of request id req.
func (h *harness) recordOf(req string) Record {
	h.t.Helper()
	deadline := time.Now().Add(runBound)
	for {
		h.mu.Lock()
		for _, r := range h.records {
			if r.RequestID == req {
				h.mu.Unlock()
				return r
			}
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			h.t.Fatalf("no record for request %s", req)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRedialKeepsTheSessionWhenTheKubeletConnectionDies(t *testing.T) {
	// The kubelet's close reads as EOF, as a reset when it had unread
	// bytes, or as a cut frame when it closed while writing one (under
	// load).
	isLostMsg := func(m string) bool {
		return strings.HasPrefix(m, "pfgateway: lost the connection to the kubelet on node node-a: ") &&
			strings.HasSuffix(m, "; this forwarded connection ended, the session goes on") &&
			(strings.Contains(m, "the kubelet closed the connection") || strings.Contains(m, "connection reset by peer") ||
				strings.Contains(m, "the connection was cut in the middle of a frame"))
	}
	for _, tt := range []struct {
		name        string
		lossMessage bool
		early       bool
	}{
		{name: "reset"},
		{name: "reset, early replies", early: true},
		{name: "message", lossMessage: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The kubelet keeps a pair's error stream open until its forward
			// ends, so the message has somewhere to go.
			p := newKubeletPool(t, replyAndEcho)
			h := startRedialRelay(t, p, Options{EarlyReply: tt.early, Reconnect: Reconnect{LossMessage: tt.lossMessage}})
			checkEcho(t, h, 0)
			// A forwarded connection in flight when the kubelet goes.
			errS, data := h.forward("8080", 1)
			msg := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(errS); msg <- b }()
			p.cut()
			if b, err := io.ReadAll(data); err != nil || len(b) != 0 {
				t.Fatalf("in-flight data stream: %q, %v", b, err)
			}
			if got := string(<-msg); (got != "" || tt.lossMessage) && (!tt.lossMessage || !isLostMsg(got)) {
				t.Fatalf("error stream: %q", got)
			}
			if rec := h.recordOf("1"); rec.Outcome != OutcomeKubeletGone || !isLostMsg(rec.Message) {
				t.Fatalf("record %+v", rec)
			}
			sessionAlive(t, h)
			// The next one dials a new connection.
			checkEcho(t, h, 2)
			checkEcho(t, h, 3)
			if n := p.dialCount(); n != 2 {
				t.Fatalf("%d dials, want 2 (the first and one redial)", n)
			}
			_ = h.client.Close()
			end := <-h.end
			h.end <- end
			if end.KubeletLosses != 1 || end.Reconnects != 1 || end.By != "client" {
				t.Fatalf("end %+v", end)
			}
		})
	}
}

func TestRedialFailureEndsOnlyThatPair(t *testing.T) {
	p := newKubeletPool(t, echoKubelet)
	lost := make(chan string, 1)
	h := startRedialRelay(t, p, Options{Reconnect: Reconnect{RedialAttempts: 3, RedialBackoff: time.Millisecond,
		OnLoss: func(node string, err error) { lost <- node + ": " + err.Error() }}})
	checkEcho(t, h, 0)
	p.setFail(errors.New("dial tcp: connection refused"))
	p.cut()
	select {
	case got := <-lost:
		if !strings.HasPrefix(got, "node-a: ") {
			t.Fatalf("OnLoss: %s", got)
		}
	case <-time.After(runBound):
		t.Fatal("the loss was not reported")
	}
	// The client's error stream is refused the way a kubelet refuses a
	// stream: client-go then closes that local connection only.
	start := time.Now()
	if _, err := h.open(kindError, "8080", 1); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("error stream creation: %v, want a reset", err)
	}
	rec := h.recordOf("1")
	if rec.Outcome != OutcomeKubeletUnreachable || rec.Message != "pfgateway: could not reconnect to the kubelet: 3 attempts: dial tcp: connection refused; this forwarded connection ended, the session goes on" {
		t.Fatalf("record %+v", rec)
	}
	if d := time.Since(start); d > runBound {
		t.Fatalf("the refusal took %v", d)
	}
	sessionAlive(t, h)
	// A pod that is gone is said on the error stream (client-go then ends
	// its session with that message, which is right: nothing can succeed).
	p.setFail(Permanent(errors.New(`pods "web" not found`)))
	before := p.dialCount()
	errS, err := h.open(kindError, "8080", 2)
	if err != nil {
		t.Fatal(err)
	}
	_ = errS.Close()
	if _, err := h.open(kindData, "8080", 2); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(errS)
	if want := `pfgateway: could not reconnect to the kubelet: pods "web" not found; this forwarded connection ended, the session goes on`; string(b) != want {
		t.Fatalf("error stream %q, want %q", b, want)
	}
	if n := p.dialCount() - before; n != 1 {
		t.Fatalf("%d dials for a permanent error, want 1", n)
	}
	// The kubelet is back: the next pair works.
	p.setFail(nil)
	checkEcho(t, h, 3)
	sessionAlive(t, h)
}

func TestRedialAfterPingTimeout(t *testing.T) {
	p := newKubeletPool(t, replyAndEcho)
	var stalls []*stallConn
	p.wrap = func(c net.Conn) net.Conn { s := newStallConn(c); stalls = append(stalls, s); return s }
	lost := make(chan error, 1)
	h := startRedialRelay(t, p, Options{KubeletPingInterval: testPingInterval, KubeletPingTimeout: testPingTimeout,
		Reconnect: Reconnect{OnLoss: func(_ string, err error) { lost <- err }}})
	checkEcho(t, h, 0)
	p.mu.Lock()
	stalls[0].stall()
	p.mu.Unlock()
	// The gateway's ping goes unanswered; the connection is dropped, not
	// the session.
	select {
	case err := <-lost:
		if !errors.Is(err, ErrKubeletPingTimeout) {
			t.Fatalf("loss: %v", err)
		}
	case <-time.After(runBound + livenessSlack):
		t.Fatal("the stalled kubelet connection was not dropped")
	}
	sessionAlive(t, h)
	checkEcho(t, h, 1)
	_ = h.client.Close()
	end := <-h.end
	h.end <- end
	if end.KubeletLosses != 1 || end.Reconnects != 1 {
		t.Fatalf("end %+v", end)
	}
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(runBound)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failingKubelet fails every forward as cri-streaming does when the pod's
// port refuses: the message on the error stream, then both streams reset.
func failingKubelet(msg string) kubeletBehaviour {
	return func(s *spdystream.Stream) {
		_ = s.SendReply(http.Header{}, false)
		if s.Headers().Get("streamType") == kindError {
			_, _ = s.Write([]byte(msg))
		}
		_ = s.Reset()
	}
}

func TestResetKubeletErrorsKeepsTheTextFromTheClient(t *testing.T) {
	const msg = `error forwarding port 8080 to pod p_default, uid u: failed to connect to localhost:8080 inside namespace "u": connection refused`
	for _, reset := range []bool{false, true} {
		h := newHarness(t, Options{Reconnect: Reconnect{ResetKubeletErrors: reset}}, failingKubelet(msg))
		errS, err := h.open(kindError, "8080", 0)
		if err != nil {
			t.Fatal(err)
		}
		_ = errS.Close()
		if data, err := h.open(kindData, "8080", 0); err == nil {
			go func() { _, _ = io.Copy(io.Discard, data) }()
		}
		got, _ := io.ReadAll(errS)
		want := msg
		if reset {
			want = ""
		}
		if string(got) != want {
			t.Fatalf("reset %v: error stream %q, want %q", reset, got, want)
		}
		if rec := h.waitRecords(1)[0]; rec.Outcome != OutcomeKubeletError || rec.Message != msg {
			t.Fatalf("reset %v: record %+v", reset, rec)
		}
	}
}
