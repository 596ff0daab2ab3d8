package relay

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"
	"github.com/moby/spdystream/spdy"

	"github.com/pfgateway/pfgateway/netconn"
)

// harness is a spdystream client → relay → spdystream server ("kubelet")
// over loopback TCP, the peers being the library client-go and the kubelet
// both run.
type harness struct {
	t      *testing.T
	client *spdystream.Connection
	server *spdystream.Connection

	mu       sync.Mutex
	records  []Record
	accepted []*spdystream.Stream // server side, in arrival order
	arrived  chan *spdystream.Stream

	end chan End
}

// kubeletBehaviour decides what the fake kubelet does with a stream.
type kubeletBehaviour func(s *spdystream.Stream)

// replyAndEcho replies, then echoes data streams until the client's FIN.
func replyAndEcho(s *spdystream.Stream) {
	_ = s.SendReply(http.Header{}, false)
	if s.Headers().Get("streamType") != kindData {
		return
	}
	go func() {
		_, _ = io.Copy(s, s)
		_ = s.Close()
	}()
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return a, <-ch
}

func newHarness(t *testing.T, o Options, kb kubeletBehaviour) *harness {
	t.Helper()
	return newHarnessWith(t, o, kb, nil)
}

// newHarnessWith is newHarness with the fake kubelet's connection wrapped
// (fault injection), when wrap is set.
func newHarnessWith(t *testing.T, o Options, kb kubeletBehaviour, wrap func(net.Conn) net.Conn) *harness {
	t.Helper()
	return newHarnessIdle(t, o, kb, wrap, false)
}

// newHarnessIdle is newHarnessWith whose relay sides, with idle set, read
// through netconn.Conn and hand over when idle (Conn.Idle), as the gateway's.
func newHarnessIdle(t *testing.T, o Options, kb kubeletBehaviour, wrap func(net.Conn) net.Conn, idle bool) *harness {
	t.Helper()
	h := &harness{t: t, arrived: make(chan *spdystream.Stream, 64), end: make(chan End, 1)}
	cc, gwc := tcpPair(t)
	gwk, kc := tcpPair(t)
	if wrap != nil {
		kc = wrap(kc)
	}
	o.Record = func(r Record) { h.mu.Lock(); h.records = append(h.records, r); h.mu.Unlock() }
	side := func(c net.Conn) Conn {
		conn := Conn{R: c, W: c, Close: c.Close, SetWriteDeadline: c.SetWriteDeadline}
		if idle {
			nc := netconn.NewConn(c)
			conn.R, conn.W, conn.Close, conn.Idle = nc, nc, nc.Close, nc
		}
		return conn
	}
	go func() { h.end <- Run(side(gwc), side(gwk), o) }()
	var err error
	if h.server, err = spdystream.NewConnection(kc, true); err != nil {
		t.Fatal(err)
	}
	go h.server.Serve(func(s *spdystream.Stream) {
		h.mu.Lock()
		h.accepted = append(h.accepted, s)
		h.mu.Unlock()
		h.arrived <- s
		if kb != nil {
			kb(s)
		}
	})
	if h.client, err = spdystream.NewConnection(cc, false); err != nil {
		t.Fatal(err)
	}
	go h.client.Serve(spdystream.NoOpStreamHandler)
	t.Cleanup(func() {
		_ = h.client.Close()
		_ = cc.Close()
		_ = kc.Close()
		select {
		case <-h.end:
		case <-time.After(5 * time.Second):
			t.Error("relay did not end after both peers closed")
		}
	})
	return h
}

func pairHeaders(kind, port string, req int) http.Header {
	h := http.Header{}
	h.Set("streamType", kind)
	h.Set("port", port)
	if req >= 0 {
		h.Set("requestID", strconv.Itoa(req))
	}
	return h
}

// open creates a stream and waits for its reply, as client-go does.
func (h *harness) open(kind, port string, req int) (*spdystream.Stream, error) {
	s, err := h.client.CreateStream(pairHeaders(kind, port, req), nil, false)
	if err != nil {
		return nil, err
	}
	return s, s.WaitTimeout(5 * time.Second)
}

// forward opens an error + data pair like client-go's handleConnection.
func (h *harness) forward(port string, req int) (errS, dataS *spdystream.Stream) {
	h.t.Helper()
	errS, err := h.open(kindError, port, req)
	if err != nil {
		h.t.Fatalf("error stream: %v", err)
	}
	_ = errS.Close()
	dataS, err = h.open(kindData, port, req)
	if err != nil {
		h.t.Fatalf("data stream: %v", err)
	}
	return errS, dataS
}

// waitRecords waits until n records arrived.
func (h *harness) waitRecords(n int) []Record {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		recs := append([]Record(nil), h.records...)
		h.mu.Unlock()
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("got %d records, want %d: %+v", len(recs), n, recs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) nextServerStream() *spdystream.Stream {
	h.t.Helper()
	select {
	case s := <-h.arrived:
		return s
	case <-time.After(5 * time.Second):
		h.t.Fatal("no stream reached the kubelet")
		return nil
	}
}

// echoRoundTrip sends payload on s, half-closes, and returns what came back.
func echoRoundTrip(t *testing.T, s *spdystream.Stream, payload []byte) []byte {
	t.Helper()
	go func() {
		_, _ = s.Write(payload)
		_ = s.Close()
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return got
}

// rawFrames decodes a byte stream of SPDY frames (for tests reading the wire).
func rawFrames(t *testing.T, b []byte) []spdy.Frame {
	t.Helper()
	f, err := spdy.NewFramer(nil, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out []spdy.Frame
	for {
		fr, err := f.ReadFrame()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		out = append(out, fr)
	}
}
