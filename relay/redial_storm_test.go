package relay

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"
)

// TestRedialUnderConcurrentForwards cuts the kubelet connection again and
// again while forwarded connections run on the session (run it with -race):
// every forward either echoes intact or is ended by the gateway, the
// session survives, and every pair gets its one record.
func TestRedialUnderConcurrentForwards(t *testing.T) {
	p := newKubeletPool(t, replyAndEcho)
	h := startRedialRelay(t, p, Options{EarlyReply: true, Reconnect: Reconnect{RedialBackoff: time.Millisecond}})
	const workers, rounds = 4, 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, ended := 0, 0
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				req := w*rounds + i
				errS, err := h.open(kindError, "8080", req)
				if err != nil {
					mu.Lock()
					ended++
					mu.Unlock()
					continue
				}
				_ = errS.Close()
				go func() { _, _ = io.Copy(io.Discard, errS) }()
				data, err := h.open(kindData, "8080", req)
				if err != nil {
					mu.Lock()
					ended++
					mu.Unlock()
					continue
				}
				payload := bytes.Repeat([]byte{byte(req)}, 64<<10)
				go func() { _, _ = data.Write(payload); _ = data.Close() }()
				got, _ := io.ReadAll(data)
				mu.Lock()
				switch {
				case bytes.Equal(got, payload):
					ok++
				case len(got) < len(payload) && bytes.Equal(got, payload[:len(got)]):
					ended++ // cut short by a loss: a prefix, never other bytes
				default:
					t.Errorf("request %d: %d bytes, not a prefix of what was sent", req, len(got))
				}
				mu.Unlock()
			}
		}()
	}
	cuts := 0
	for done := false; !done; {
		time.Sleep(20 * time.Millisecond) // the fault's cadence
		p.cut()
		cuts++
		mu.Lock()
		done = ok+ended == workers*rounds
		mu.Unlock()
		if cuts > 500 {
			t.Fatal("the forwards did not finish")
		}
	}
	wg.Wait()
	sessionAlive(t, h)
	// The last cut may still be being noticed: a forward racing it is
	// reset, the next one goes to a new connection.
	for attempt := 0; ; attempt++ {
		errS, err := h.open(kindError, "8080", 1000+attempt)
		if err == nil {
			_ = errS.Close()
			go func() { _, _ = io.Copy(io.Discard, errS) }()
			var data *spdystream.Stream
			if data, err = h.open(kindData, "8080", 1000+attempt); err == nil {
				if got := echoRoundTrip(t, data, []byte("after the storm")); string(got) == "after the storm" {
					break
				}
			}
		}
		if attempt == 2 {
			t.Fatalf("no forward succeeded after the cuts stopped: %v", err)
		}
	}
	t.Logf("%d cuts: %d forwards echoed, %d ended by a loss", cuts, ok, ended)
	_ = h.client.Close()
	end := <-h.end
	h.end <- end
	if end.KubeletLosses == 0 || end.Reconnects == 0 {
		t.Fatalf("end %+v", end)
	}
	seen := map[string]int{}
	h.mu.Lock()
	for _, r := range h.records {
		seen[r.RequestID]++
	}
	h.mu.Unlock()
	for req := range workers * rounds {
		if n := seen[strconv.Itoa(req)]; n != 1 {
			t.Errorf("request %d has %d records, want 1", req, n)
		}
	}
}

// TestRedialHalfPair: the kubelet connection is lost between a pair's
// error stream (answered) and its data stream: the data stream is refused
// like its error stream was, instead of reaching a new kubelet that never
// saw the error stream.
func TestRedialHalfPair(t *testing.T) {
	for _, tell := range []bool{false, true} {
		t.Run(fmt.Sprintf("message %v", tell), func(t *testing.T) { redialHalfPair(t, tell) })
	}
}

func redialHalfPair(t *testing.T, tell bool) {
	p := newKubeletPool(t, replyAndEcho)
	lost := make(chan struct{}, 1)
	h := startRedialRelay(t, p, Options{Reconnect: Reconnect{LossMessage: tell, OnLoss: func(string, error) { lost <- struct{}{} }}})
	errS, err := h.open(kindError, "8080", 7)
	if err != nil {
		t.Fatal(err)
	}
	_ = errS.Close()
	msg := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(errS); msg <- b }()
	p.cut()
	<-lost
	data, err := h.open(kindData, "8080", 7)
	if tell {
		if err != nil {
			t.Fatalf("message mode: data stream %v, want it answered to carry the message", err)
		}
		go func() { _, _ = io.Copy(io.Discard, data) }()
		if b := <-msg; !strings.HasPrefix(string(b), "pfgateway: lost the connection to the kubelet on node node-a: ") {
			t.Fatalf("message mode: error stream %q", b)
		}
	} else {
		if err == nil || !strings.Contains(err.Error(), "reset") {
			t.Fatalf("reset mode: data stream creation %v, want a reset", err)
		}
		if b := <-msg; len(b) != 0 {
			t.Fatalf("reset mode: error stream %q", b)
		}
	}
	if rec := h.recordOf("7"); rec.Outcome != OutcomeKubeletGone {
		t.Fatalf("tell %v: record %+v", tell, rec)
	}
	if n := p.dialCount(); n != 1 {
		t.Fatalf("tell %v: %d dials, want 1: the refused data stream must not redial", tell, n)
	}
	checkEcho(t, h, 8)
}

// TestRedialAfterKubeletGoAway: the kubelet closes an idle connection with
// GOAWAY (its 4-hour streaming idle cap): the session goes on and the next
// pair dials a new connection.
func TestRedialAfterKubeletGoAway(t *testing.T) {
	p := newKubeletPool(t, replyAndEcho)
	lost := make(chan error, 1)
	h := startRedialRelay(t, p, Options{Reconnect: Reconnect{OnLoss: func(_ string, err error) { lost <- err }}})
	checkEcho(t, h, 0)
	p.mu.Lock()
	k := p.conns[0]
	p.mu.Unlock()
	go func() { _ = k.Close() }() // spdystream: GOAWAY, then it waits for its streams
	select {
	case err := <-lost:
		if lossReason(err) != "the kubelet sent GOAWAY" {
			t.Fatalf("loss: %v", err)
		}
	case <-time.After(runBound):
		t.Fatal("the GOAWAY was not taken for a loss")
	}
	sessionAlive(t, h)
	checkEcho(t, h, 1)
}
