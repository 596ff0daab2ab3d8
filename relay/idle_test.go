package relay

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// handedOver counts the goroutines waiting for a quiet side's bytes (read):
// the frame appears once in each one's stack.
func handedOver() int {
	return strings.Count(allStacks(), "netconn.(*Conn).WaitReadable(")
}

func waitHandedOver(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for handedOver() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d readers handed over, want %d", handedOver(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIdleHandOver: both readers of a quiet session hand over to waiting
// goroutines and the session carries on, bytes intact, through each side
// waking them; a panic on a goroutine that took over still ends the
// session and not the process; a Stop while both wait ends the session.
func TestIdleHandOver(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640 KiB, past the 64 KiB buffer

	t.Run("bytes flow after every wait", func(t *testing.T) {
		h := newHarnessIdle(t, Options{}, replyAndEcho, nil, true)
		for round := range 3 {
			waitHandedOver(t, 2)
			_, data := h.forward("8080", round)
			if got := echoRoundTrip(t, data, payload); !bytes.Equal(got, payload) {
				t.Fatalf("round %d: echoed %d bytes that differ from the %d sent", round, len(got), len(payload))
			}
		}
		waitHandedOver(t, 2)
		_ = h.client.Close()
		h.waitEnd(5 * time.Second)
		waitHandedOver(t, 0)
	})

	t.Run("a panic after the hand-over ends the session", func(t *testing.T) {
		var calls atomic.Int32
		h := newHarnessIdle(t, Options{Decide: func(PairInfo) Decision {
			if calls.Add(1) > 2 { // the second pair, on the goroutine that took over
				panic("boom")
			}
			return Decision{}
		}}, replyAndEcho, nil, true)
		_, data := h.forward("8080", 0)
		if got := echoRoundTrip(t, data, []byte("first")); string(got) != "first" {
			t.Fatalf("echoed %q", got)
		}
		waitHandedOver(t, 2)
		_, _ = h.client.CreateStream(pairHeaders(kindError, "8080", 1), nil, false)
		end := h.waitEnd(5 * time.Second)
		if end.Panic != "boom" || len(end.Stack) == 0 {
			t.Errorf("End %+v, want the panic %q with a stack", end, "boom")
		}
		waitHandedOver(t, 0)
	})

	t.Run("a stop while both wait", func(t *testing.T) {
		stop := NewStopper(nopCloser{})
		h := newHarnessIdle(t, Options{Stop: stop}, replyAndEcho, nil, true)
		waitHandedOver(t, 2)
		_ = stop.CloseWithMessage("pfgateway: stopping")
		h.waitEnd(5 * time.Second)
		waitHandedOver(t, 0)
	})
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
