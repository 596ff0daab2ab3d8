package relay

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/spdystream"
	"github.com/moby/spdystream/spdy"
)

// kubelet behaviour as cri-streaming has it, reduced: reply at once, echo
// data streams, half-close the error stream once its data stream ended.
func echoKubelet(s *spdystream.Stream) {
	_ = s.SendReply(http.Header{}, false)
	if s.Headers().Get("streamType") == kindError {
		_ = s.Close()
		return
	}
	go func() {
		_, _ = io.Copy(s, s)
		_ = s.Close()
	}()
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRelayEchoesAndRecordsEachForward(t *testing.T) {
	h := newHarness(t, Options{}, echoKubelet)
	payload := randomBytes(t, 3<<20)
	for req := 0; req < 2; req++ {
		_, data := h.forward("8080", req)
		got := echoRoundTrip(t, data, payload)
		if sha256.Sum256(got) != sha256.Sum256(payload) {
			t.Fatalf("forward %d: echoed %d bytes, hash differs from the %d sent", req, len(got), len(payload))
		}
	}
	recs := h.waitRecords(2)
	for i, r := range recs {
		if r.Port != 8080 || r.Up != int64(len(payload)) || r.Down != int64(len(payload)) || r.Outcome != OutcomeClientClosed || r.Message != "" {
			t.Errorf("record %d = %+v, want port 8080, %d bytes each way, client_closed", i, r, len(payload))
		}
		if r.End.Before(r.Start) {
			t.Errorf("record %d ends before it starts", i)
		}
	}
	if recs[0].RequestID == recs[1].RequestID {
		t.Errorf("both records have requestID %q", recs[0].RequestID)
	}
}

func TestKubeletSideIDsAreTheGatewaysOwn(t *testing.T) {
	deny := func(p PairInfo) Decision { return Decision{Deny: p.Port == 22} }
	h := newHarness(t, Options{Decide: deny}, echoKubelet)
	if _, err := h.open(kindError, "22", 0); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("refused stream: err = %v, want a reset", err)
	}
	errS, data := h.forward("8080", 1)
	if got := echoRoundTrip(t, data, []byte("ping")); string(got) != "ping" {
		t.Fatalf("echo = %q", got)
	}
	// The client used 1 (refused), 3 and 5; the kubelet saw the gateway's 1 and 3.
	k1, k2 := h.nextServerStream(), h.nextServerStream()
	if errS.Identifier() != 3 || data.Identifier() != 5 || k1.Identifier() != 1 || k2.Identifier() != 3 {
		t.Fatalf("ids client %d,%d kubelet %d,%d; want 3,5 and 1,3", errS.Identifier(), data.Identifier(), k1.Identifier(), k2.Identifier())
	}
	if got := k1.Headers().Get("port"); got != "8080" {
		t.Fatalf("kubelet saw port %q first, want 8080 (port 22 must never reach it)", got)
	}
	recs := h.waitRecords(2)
	if recs[0].Outcome != OutcomeRefused || recs[0].Port != 22 || recs[1].Outcome != OutcomeClientClosed {
		t.Fatalf("records %+v", recs)
	}
}

func TestRefusalWithMessageLeavesOtherForwardsFlowing(t *testing.T) {
	const msg = "port 22 is not allowed by policy"
	deny := func(p PairInfo) Decision {
		if p.Port == 22 {
			return Decision{Deny: true, Message: msg}
		}
		return Decision{}
	}
	h := newHarness(t, Options{Decide: deny}, echoKubelet)
	_, live := h.forward("8080", 0)

	errS, data := h.forward("22", 1) // both streams replied, as by a kubelet whose dial fails
	text, err := io.ReadAll(errS)
	if err != nil || string(text) != msg {
		t.Fatalf("error stream = %q, %v; want %q", text, err, msg)
	}
	if b, _ := io.ReadAll(data); len(b) != 0 {
		t.Fatalf("refused data stream carried %q", b)
	}
	if got := echoRoundTrip(t, live, []byte("still here")); string(got) != "still here" {
		t.Fatalf("the other forward echoed %q", got)
	}
	recs := h.waitRecords(2)
	if recs[0].Outcome != OutcomeRefused || recs[0].Message != msg || recs[0].Port != 22 {
		t.Fatalf("refused record %+v", recs[0])
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.accepted {
		if s.Headers().Get("port") == "22" {
			t.Fatal("a refused stream reached the kubelet")
		}
	}
}

func TestEarlyReplyDoesNotWaitForTheKubelet(t *testing.T) {
	release := make(chan struct{})
	// Blocking the handler holds that stream's reply (spdystream handles a
	// stream's frames on one worker), as a busy kubelet would.
	slow := func(s *spdystream.Stream) { <-release; echoKubelet(s) }
	h := newHarness(t, Options{EarlyReply: true}, slow)
	// Both creations return although the kubelet has replied to neither.
	_, data := h.forward("8080", 0)
	close(release)
	payload := randomBytes(t, 1<<20)
	if got := echoRoundTrip(t, data, payload); !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d bytes, differing from the %d sent", len(got), len(payload))
	}
	if recs := h.waitRecords(1); recs[0].Outcome != OutcomeClientClosed || recs[0].Up != int64(len(payload)) {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestEarlyReplyResetsWhenTheKubeletNeverAnswers(t *testing.T) {
	h := newHarness(t, Options{EarlyReply: true, CreationTimeout: 200 * time.Millisecond}, func(*spdystream.Stream) {})
	errS, err := h.open(kindError, "8080", 0)
	if err != nil {
		t.Fatalf("early reply: %v", err)
	}
	// The gateway's timer resets the stream: the client's read ends.
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(errS); done <- b }()
	select {
	case b := <-done:
		if len(b) != 0 {
			t.Fatalf("read %q from a reset stream", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream was not reset after the creation timeout")
	}
	if recs := h.waitRecords(1); recs[0].Outcome != OutcomeCreationTimeout {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestInvalidHeadersAreTheKubeletsToRefuse(t *testing.T) {
	// A kubelet that resets what cri-streaming's httpStreamReceived rejects.
	strict := func(s *spdystream.Stream) {
		if _, ok := parsePort(s.Headers().Get("port")); !ok {
			_ = s.Reset()
			return
		}
		echoKubelet(s)
	}
	for _, early := range []bool{false, true} {
		h := newHarness(t, Options{EarlyReply: early}, strict)
		for _, port := range []string{"", "0", "abc", "70000"} {
			if _, err := h.open(kindError, port, 0); err == nil || !strings.Contains(err.Error(), "reset") {
				t.Fatalf("early=%v port %q: err %v, want a reset", early, port, err)
			}
		}
		_, data := h.forward("8080", 9)
		if got := echoRoundTrip(t, data, []byte("ok")); string(got) != "ok" {
			t.Fatalf("early=%v: the session did not survive: %q", early, got)
		}
		for i, r := range h.waitRecords(5)[:4] {
			if r.Outcome != OutcomeKubeletRefused {
				t.Errorf("early=%v record %d = %+v, want kubelet_refused", early, i, r)
			}
		}
	}
}

func TestMissingRequestIDIsDerivedFromClientIDs(t *testing.T) {
	deny := func(p PairInfo) Decision { return Decision{Deny: p.Port == 22} }
	h := newHarness(t, Options{Decide: deny}, echoKubelet)
	_, _ = h.open(kindError, "22", 0) // refused: client id 1, ids diverge from here
	errS, err := h.open(kindError, "8080", -1)
	if err != nil {
		t.Fatal(err)
	}
	_ = errS.Close()
	data, err := h.open(kindData, "8080", -1)
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := h.nextServerStream(), h.nextServerStream()
	// Client ids 3 and 5: the kubelet pairs them as it would have directly
	// (error id, data id - 2), not by its own ids 1 and 3.
	if a, b := k1.Headers().Get("requestID"), k2.Headers().Get("requestID"); a != "3" || b != "3" {
		t.Fatalf("kubelet saw requestIDs %q, %q; want 3, 3", a, b)
	}
	if got := echoRoundTrip(t, data, []byte("x")); string(got) != "x" {
		t.Fatalf("echo %q", got)
	}
}

func TestStreamLimitRefusesWithRefusedStream(t *testing.T) {
	h := newHarness(t, Options{MaxStreams: 2}, echoKubelet)
	errS, data := h.forward("8080", 0)
	// The error stream ends once the kubelet's FIN comes back; the gateway
	// forgets it before relaying that FIN, so after EOF only the data
	// stream counts against the limit.
	if _, err := io.ReadAll(errS); err != nil {
		t.Fatalf("error stream: %v", err)
	}
	if _, err := h.open(kindError, "8080", 1); err != nil {
		t.Fatalf("second open stream: %v", err)
	}
	if _, err := h.open(kindError, "8080", 2); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("third open stream: err %v, want a reset", err)
	}
	if got := echoRoundTrip(t, data, []byte("y")); string(got) != "y" {
		t.Fatalf("echo %q", got)
	}
	recs := h.waitRecords(2)
	if recs[0].Outcome != OutcomeGatewayLimit {
		t.Fatalf("records %+v", recs)
	}
}

func TestDuplicateRequestID(t *testing.T) {
	h := newHarness(t, Options{}, echoKubelet)
	_, data := h.forward("8080", 4)
	if _, err := h.open(kindError, "8080", 4); err != nil {
		t.Fatalf("duplicate stream: %v (the kubelet replies to it)", err)
	}
	_ = echoRoundTrip(t, data, []byte("z"))
	if recs := h.waitRecords(1); recs[0].Outcome != OutcomeDuplicateRequest {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestKubeletGoingAwayEndsTheClientSession(t *testing.T) {
	h := newHarness(t, Options{}, echoKubelet)
	h.forward("8080", 0)
	_ = h.server.Close()
	select {
	case <-h.client.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("client connection still open after the kubelet went away")
	}
	if recs := h.waitRecords(1); recs[0].Outcome != OutcomeKubeletGone {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestDictID(t *testing.T) {
	var b bytes.Buffer
	f, err := spdy.NewFramer(&b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFrame(&spdy.SynReplyFrame{StreamId: 1, Headers: http.Header{"A": {"b"}}}); err != nil {
		t.Fatal(err)
	}
	// 8-byte frame header, 4-byte stream id, then the zlib header: CMF, FLG, DICTID.
	if got := b.Bytes()[14:18]; !bytes.Equal(got, dictID[:]) {
		t.Fatalf("spdystream's dictionary id is % x, relay uses % x", got, dictID)
	}
}
