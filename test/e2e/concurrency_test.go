package e2e

import (
	"fmt"
	"maps"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

// TestConcurrentConnectionsInOneSession runs 50 TCP connections at once
// through one client-go forwarder of three ports: one SPDY connection to the
// gateway carrying 100 streams (an error and a data stream per connection).
// Every connection's bytes are checked both ways, the gateway sees exactly
// one session, and records each connection under its port as closed
// normally.
func TestConcurrentConnectionsInOneSession(t *testing.T) {
	const conns = 50
	e := newEnv(t, func(o *options.Options) { o.Streams.MetricsPorts = hashPorts })
	for _, tt := range []struct {
		kind     dialerKind
		protocol string
	}{
		{dialSPDY, "spdy"},
		{dialTunnel, "websocket"},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			f := startForward(t, dialer(t, tt.kind, e.cfg, e.pfURL("", "hash")), hashPorts...)
			var next atomic.Int64
			want := map[string]float64{}
			for i := range conns {
				want[fmt.Sprintf("outcome=closed,port=%d,protocol=%s", hashPorts[i%3], tt.protocol)]++
			}
			dial := func() (net.Conn, error) { return net.Dial("tcp", f.locals[(next.Add(1)-1)%3]) }
			before := e.scrape(t).series(mForwards)
			elapsed, err := transferAll(t, conns, dial, perConnBytes, perConnBytes)
			if err != nil {
				return
			}
			total := float64(2*conns*perConnBytes) / (1 << 20)
			t.Logf("%s: %d connections × %d KiB each way in %v: %.1f MiB/s (all directions)",
				tt.kind, conns, perConnBytes>>10, elapsed.Round(1e6), total/elapsed.Seconds())
			if n := e.gw.Sessions.Len(); n != 1 {
				t.Errorf("gateway has %d live sessions, want 1 (one per forwarder, not per connection)", n)
			}
			f.stop()
			e.waitSessions(t, tt.protocol, "completed", 1)
			e.waitIdle(t)
			// Which side's FIN reaches the gateway first is the kubelet's
			// timing (the pod closes first; the kubelet usually waits for
			// the client's FIN, under load not always), so both normal
			// ends count as "closed".
			normal := strings.NewReplacer("outcome=client_closed,", "outcome=closed,", "outcome=pod_closed,", "outcome=closed,")
			got := map[string]float64{}
			for k, v := range e.scrape(t).series(mForwards) {
				got[normal.Replace(k)] += v - before[k]
			}
			if got = nonZero(got); !maps.Equal(got, want) {
				t.Errorf("forwarded connections:%s\nwant:%s", formatSeries(got), formatSeries(want))
			}
		})
	}
}

// TestConcurrentSessions runs 20 forwarders at once (20 sessions through
// the gateway), alternating SPDY and the WebSocket tunnel, each moving
// perSessionBytes each way.
func TestConcurrentSessions(t *testing.T) {
	const sessions = 20
	e := newEnv(t)
	fwds := make([]*forward, sessions)
	for i := range fwds {
		kind := dialSPDY
		if i%2 == 1 {
			kind = dialTunnel
		}
		fwds[i] = startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "hash")), hashPort)
	}
	if n := e.gw.Sessions.Len(); n != sessions {
		t.Errorf("gateway has %d live sessions, want %d", n, sessions)
	}
	next := make(chan *forward, sessions)
	for _, f := range fwds {
		next <- f
	}
	dial := func() (net.Conn, error) { return (<-next).dial() }
	elapsed, err := transferAll(t, sessions, dial, perSessionBytes, perSessionBytes)
	if err != nil {
		return
	}
	total := float64(2*sessions*perSessionBytes) / (1 << 20)
	t.Logf("%d sessions × %d MiB each way in %v: %.1f MiB/s (all directions)", sessions, perSessionBytes>>20, elapsed.Round(1e6), total/elapsed.Seconds())
	for _, f := range fwds {
		f.stop()
	}
	e.waitSessions(t, "spdy", "completed", sessions/2)
	e.waitSessions(t, "websocket", "completed", sessions/2)
	e.waitIdle(t)
}
