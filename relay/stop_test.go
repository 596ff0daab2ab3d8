package relay

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/moby/spdystream"
)

// endlessKubelet replies, then writes to every data stream until it fails.
func endlessKubelet(s *spdystream.Stream) {
	_ = s.SendReply(http.Header{}, false)
	if s.Headers().Get("streamType") != kindData {
		return
	}
	go func() {
		b := make([]byte, 32<<10)
		for {
			if _, err := s.Write(b); err != nil {
				return
			}
		}
	}()
}

// waitEnd waits for the relay to return and puts its End back for the
// harness's cleanup.
func (h *harness) waitEnd(d time.Duration) End {
	h.t.Helper()
	select {
	case e := <-h.end:
		h.end <- e
		return e
	case <-time.After(d):
		h.t.Fatalf("the relay did not end within %v", d)
		return End{}
	}
}

func TestStopTellsEveryOpenForwardWhy(t *testing.T) {
	const msg = "pfgateway: pod default/web-0 was deleted"
	stop := NewStopper(io.NopCloser(nil))
	// The kubelet half-closes a pair's error stream only when the forward
	// ends (cri-streaming portForward), as replyAndEcho does.
	h := newHarness(t, Options{Stop: stop}, replyAndEcho)
	errA, dataA := h.forward("8080", 0)
	errB, dataB := h.forward("8081", 1)
	if got := echoRoundTrip(t, dataB, []byte("before")); string(got) != "before" {
		t.Fatalf("echo %q", got)
	}

	texts := make(chan string, 2)
	for _, e := range []*spdystream.Stream{errA, errB} {
		go func() { b, _ := io.ReadAll(e); texts <- string(b) }()
	}
	start := time.Now()
	_ = stop.CloseWithMessage(msg)
	_ = stop.CloseWithMessage("a second message is dropped")
	for range 2 {
		select {
		case got := <-texts:
			if got != msg {
				t.Errorf("error stream = %q, want %q", got, msg)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no message on an open forward's error stream")
		}
	}
	for _, d := range []*spdystream.Stream{dataA, dataB} {
		if b, _ := io.ReadAll(d); len(b) != 0 {
			t.Errorf("data stream carried %q after the stop", b)
		}
	}
	select {
	case <-h.client.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("the client connection is still open after the stop")
	}
	h.waitEnd(5 * time.Second)
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	recs := h.waitRecords(2)
	for _, r := range recs {
		if r.Outcome != OutcomeSessionClosed || r.Message != msg {
			t.Errorf("record %+v, want outcome %s with the message", r, OutcomeSessionClosed)
		}
	}
	if recs[0].Up+recs[1].Up != int64(len("before")) {
		t.Errorf("records count %d+%d bytes up, want %d", recs[0].Up, recs[1].Up, len("before"))
	}
}

// A client that stopped reading cannot hold the stop: the relay still
// ends, within its write bound and linger.
func TestStopIsBoundedWithAClientThatDoesNotRead(t *testing.T) {
	stop := NewStopper(io.NopCloser(nil))
	h := newHarness(t, Options{Stop: stop}, endlessKubelet)
	h.forward("8080", 0) // the client never reads the data stream: spdystream stalls its connection
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	_ = stop.CloseWithMessage("pfgateway: the gateway is shutting down")
	h.waitEnd(10 * time.Second)
	if d := time.Since(start); d > stopBound+2*time.Second {
		t.Errorf("the stop took %v", d)
	}
}

func TestStopBeforeRunIsKeptForTheRelay(t *testing.T) {
	stop := NewStopper(io.NopCloser(nil))
	_ = stop.CloseWithMessage("early")
	h := newHarness(t, Options{Stop: stop}, echoKubelet)
	select {
	case <-h.client.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("a relay stopped before it ran did not close the client")
	}
	h.waitEnd(5 * time.Second)
	var nilStop *Stopper
	nilStop.attach(func(string) { t.Error("a nil Stopper fired") })
	nilStop.detach()
}

// client-go opens a pair's data stream only once its error stream is
// replied: a Stop between the two ends the pair with its message, and the
// data stream that follows is refused alone, not recorded as a second
// forward (one forwarded connection, one record).
func TestStopBetweenTheStreamsOfAPair(t *testing.T) {
	const msg = "pfgateway: the gateway is shutting down"
	stop := NewStopper(io.NopCloser(nil))
	h := newHarness(t, Options{Stop: stop}, replyAndEcho)
	errS, err := h.open(kindError, "8080", 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = stop.CloseWithMessage(msg)
	if b, _ := io.ReadAll(errS); string(b) != msg {
		t.Errorf("error stream = %q, want %q", b, msg)
	}
	if _, err := h.open(kindData, "8080", 0); err == nil {
		t.Error("the data stream of a stopped pair was accepted")
	}
	h.waitEnd(5 * time.Second)
	h.mu.Lock()
	recs := append([]Record(nil), h.records...)
	h.mu.Unlock()
	if len(recs) != 1 || recs[0].Outcome != OutcomeSessionClosed || recs[0].Message != msg {
		t.Errorf("records %+v, want one %s with the message", recs, OutcomeSessionClosed)
	}
}

// The Stopper hands its first message to the relay once, whenever the
// relay attaches, and nothing once the relay ended.
func TestStopperHandOver(t *testing.T) {
	tests := []struct {
		name  string
		steps func(s *Stopper, fire func(string))
		want  []string
	}{
		{name: "a message before the relay runs", want: []string{"a"}, steps: func(s *Stopper, fire func(string)) {
			_ = s.CloseWithMessage("a")
			s.attach(fire)
		}},
		{name: "a message while it runs; the second is dropped", want: []string{"a"}, steps: func(s *Stopper, fire func(string)) {
			s.attach(fire)
			_ = s.CloseWithMessage("a")
			_ = s.CloseWithMessage("b")
		}},
		{name: "an empty message is none", want: []string{"b"}, steps: func(s *Stopper, fire func(string)) {
			s.attach(fire)
			_ = s.CloseWithMessage("")
			_ = s.CloseWithMessage("b")
		}},
		{name: "nothing after the relay ended", want: nil, steps: func(s *Stopper, fire func(string)) {
			s.attach(fire)
			s.detach()
			_ = s.CloseWithMessage("a")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			tt.steps(NewStopper(io.NopCloser(nil)), func(msg string) { got = append(got, msg) })
			if !slices.Equal(got, tt.want) {
				t.Errorf("fired %q, want %q", got, tt.want)
			}
		})
	}
}
