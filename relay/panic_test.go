package relay

import (
	"context"
	"errors"
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

// So does a panic on the kubelet reader's goroutine: here Reconnect.OnLoss,
// called there when the kubelet connection is lost.
func TestKubeletReaderPanicEndsTheSession(t *testing.T) {
	h := newHarness(t, Options{Reconnect: Reconnect{
		Redial: func(context.Context) (Conn, error) { return Conn{}, errors.New("not dialed in this test") },
		OnLoss: func(string, error) { panic("boom") },
	}}, nil)
	_ = h.server.Close()
	end := h.waitEnd(5 * time.Second)
	if end.Panic != "boom" || len(end.Stack) == 0 {
		t.Errorf("End %+v, want the panic %q with a stack", end, "boom")
	}
	select {
	case <-h.client.CloseChan():
	case <-time.After(5 * time.Second):
		t.Error("the client connection is still open after the panic")
	}
}
