package relay

import (
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"
)

const (
	testPingInterval = 50 * time.Millisecond
	testPingTimeout  = 100 * time.Millisecond
	// livenessSlack absorbs scheduling under -race on a shared machine.
	livenessSlack = 750 * time.Millisecond
)

// stallConn is a kubelet connection whose reads can be frozen, as a hung
// kubelet or a silently dropped network path looks to the gateway.
type stallConn struct {
	net.Conn
	once    sync.Once
	stalled chan struct{}
	closed  chan struct{}
	cOnce   sync.Once
}

func newStallConn(c net.Conn) *stallConn {
	return &stallConn{Conn: c, stalled: make(chan struct{}), closed: make(chan struct{})}
}

func (c *stallConn) stall() { c.once.Do(func() { close(c.stalled) }) }

func (c *stallConn) Read(p []byte) (int, error) {
	select {
	case <-c.stalled:
		<-c.closed // frozen until the test's cleanup closes it
		return 0, net.ErrClosed
	default:
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Close() error {
	c.cOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// waitRelayGone waits until no goroutine runs the relay's own code (read
// loops, timer callbacks): the harness's peers are not counted.
func waitRelayGone(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(runBound)
	for {
		var left []string
		for _, g := range strings.Split(allStacks(), "\n\n") {
			if strings.Contains(g, "pfgateway/relay.(*relay)") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay goroutines left behind:\n%s", strings.Join(left, "\n\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLivenessAnsweringKubeletKeepsTheSession(t *testing.T) {
	h := newHarness(t, Options{KubeletPingInterval: testPingInterval, KubeletPingTimeout: testPingTimeout}, replyAndEcho)
	// Ten intervals of silence from the client: only the gateway's pings
	// and the kubelet's echoes cross.
	select {
	case end := <-h.end:
		t.Fatalf("session ended while the kubelet answered pings: %+v", end)
	case <-time.After(10 * testPingInterval):
	}
	_, dataS := h.forward("8080", 1)
	if got := echoRoundTrip(t, dataS, []byte("still here")); string(got) != "still here" {
		t.Fatalf("echo after idle intervals = %q", got)
	}
}

func TestLivenessStalledKubeletEndsTheSession(t *testing.T) {
	var kc *stallConn
	h := newHarnessWith(t, Options{KubeletPingInterval: testPingInterval, KubeletPingTimeout: testPingTimeout}, replyAndEcho,
		func(c net.Conn) net.Conn { kc = newStallConn(c); return kc })
	// One forward completes, one is open when the kubelet hangs.
	_, dataS := h.forward("8080", 1)
	if got := echoRoundTrip(t, dataS, []byte("x")); string(got) != "x" {
		t.Fatalf("echo = %q", got)
	}
	h.forward("8080", 3)
	kc.stall()
	start := time.Now()
	var end End
	select {
	case end = <-h.end:
		h.end <- end // for the harness's cleanup
	case <-time.After(testPingInterval + testPingTimeout + livenessSlack):
		t.Fatal("the session outlived a kubelet that stopped answering pings")
	}
	if bound := testPingInterval + testPingTimeout + livenessSlack; time.Since(start) > bound {
		t.Fatalf("ended after %v, want within %v", time.Since(start), bound)
	}
	if end.By != "kubelet" || !errors.Is(end.Err, ErrKubeletPingTimeout) {
		t.Fatalf("End = %+v, want the kubelet's ping timeout", end)
	}
	recs := h.waitRecords(2)
	// Pair 1 may still be open (half-closed by the client) when the kubelet
	// hangs; then both records come at teardown, in no fixed order.
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.RequestID, b.RequestID) })
	if recs[0].Outcome != OutcomeClientClosed || recs[1].Outcome != OutcomeKubeletGone {
		t.Fatalf("outcomes %q, %q; want %q, %q", recs[0].Outcome, recs[1].Outcome, OutcomeClientClosed, OutcomeKubeletGone)
	}
	waitRelayGone(t)
}

// A ping mirrored for the client counts as the gateway's own: the next one
// waits a full interval, and an unanswered one times out like any other.
func TestLivenessMirroredPingCountsAndTimesOut(t *testing.T) {
	const interval, timeout = 150 * time.Millisecond, 150 * time.Millisecond
	h := newRawHarness(t, Options{KubeletPingInterval: interval, KubeletPingTimeout: timeout})
	h.send(appendPing(nil, 1))
	p, ok := readFrame(t, h.kubelet, h.kFramer).(*spdy.PingFrame)
	if !ok {
		t.Fatalf("kubelet got %#v, want a ping", p)
	}
	mirrored := time.Now()
	if _, err := h.kubelet.Write(appendPing(nil, p.Id)); err != nil {
		t.Fatal(err)
	}
	p2, ok := readFrame(t, h.kubelet, h.kFramer).(*spdy.PingFrame)
	if !ok || p2.Id == p.Id || p2.Id&1 == 0 {
		t.Fatalf("kubelet got %#v, want the gateway's next ping", p2)
	}
	if d := time.Since(mirrored); d < interval-10*time.Millisecond {
		t.Fatalf("the gateway pinged %v after the mirrored ping, want an interval (%v)", d, interval)
	}
	// Left unanswered, it ends the session.
	select {
	case end := <-h.end:
		h.end <- end
		if !errors.Is(end.Err, ErrKubeletPingTimeout) || end.By != "kubelet" {
			t.Fatalf("End = %+v, want the kubelet's ping timeout", end)
		}
	case <-time.After(timeout + livenessSlack):
		t.Fatal("an unanswered ping did not end the session")
	}
	waitRelayGone(t)
}

func TestLivenessDisabledSendsNoPings(t *testing.T) {
	h := newRawHarness(t, Options{})
	_ = h.kubelet.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if f, err := h.kFramer.ReadFrame(); err == nil {
		t.Fatalf("the kubelet got %#v with pings off", f)
	}
	select {
	case end := <-h.end:
		t.Fatalf("session ended with pings off: %+v", end)
	default:
	}
}
