package e2e

import (
	"maps"
	"testing"

	"k8s.io/client-go/tools/portforward"
)

// TestClientLeavesMidCreation: client-go sessions that close right after
// creating a forwarded connection's streams (answered early by the gateway,
// so the test kubelet may not have answered them yet) end cleanly, over
// SPDY and the WebSocket tunnel. The test kubelet runs the real
// cri-streaming/spdystream code in this process, so a kubelet left waiting
// on a stream whose reply it failed to write shows as a goroutine leak,
// and a RST racing that reply as a data race under -race (the gateway
// holds its GOAWAY until the kubelet has answered, relay/answers.go).
// Every session is counted once, and the next session still forwards.
func TestClientLeavesMidCreation(t *testing.T) {
	const rounds = 40
	e := newEnv(t)
	// Warm up (lazily started goroutines stay), then count.
	e.openLive(t, dialSPDY, "hash").conn.Close()
	e.openLive(t, dialTunnel, "hash").conn.Close()
	e.waitIdle(t)
	base := takeBaseline(t)

	for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
		for i := 0; i < rounds; i++ {
			conn, _, err := dialer(t, kind, e.cfg, e.pfURL("", "hash")).Dial(portforward.PortForwardProtocolV1Name)
			if err != nil {
				t.Fatalf("%s session %d: %v", kind, i, err)
			}
			openPair(t, conn, hashPort, 0)
			_ = conn.Close()
		}
	}
	e.waitIdle(t)

	base.check(t, "")
	want := map[string]float64{
		"outcome=completed,protocol=spdy":      rounds + 1,
		"outcome=completed,protocol=websocket": rounds + 1,
	}
	if got := nonZero(e.scrape(t).series(mSessions)); !maps.Equal(got, want) {
		t.Errorf("%s:%s\nwant:%s", mSessions, formatSeries(got), formatSeries(want))
	}

	// The gateway and the kubelet forward on.
	l := e.openLive(t, dialSPDY, "hash")
	l.expectOpen(t, 2)
}
