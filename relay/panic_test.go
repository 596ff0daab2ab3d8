package relay

import (
	"testing"
	"time"
)

// A panic on the client reader's goroutine (here in Options.Decide) ends
// the session, not the process: both connections close and End carries the
// panic for the caller to log.
func TestPanicEndsTheSession(t *testing.T) {
	h := newHarness(t, Options{Decide: func(PairInfo) Decision { panic("boom") }}, echoKubelet)
	if _, err := h.client.CreateStream(pairHeaders(kindError, "8080", 0), nil, false); err != nil {
		t.Fatal(err)
	}
	end := h.waitEnd(5 * time.Second)
	if end.Panic != "boom" || end.Err == nil || len(end.Stack) == 0 {
		t.Errorf("End %+v, want the panic %q with an error and a stack", end, "boom")
	}
	select {
	case <-h.client.CloseChan():
	case <-time.After(5 * time.Second):
		t.Error("the client connection is still open after the panic")
	}
}
