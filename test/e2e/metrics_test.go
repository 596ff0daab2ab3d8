package e2e

import (
	"maps"
	"net"
	"testing"

	"k8s.io/client-go/tools/portforward"
)

// TestMetrics runs a known set of sessions (2 SPDY, 1 WebSocket tunnel,
// 1 legacy WebSocket, each moving payload bytes each way) and known failures,
// then scrapes /metrics over HTTP and compares every pfgateway series.
func TestMetrics(t *testing.T) {
	const payload = 4 << 20
	e := newEnv(t)
	e.addAPIOnlyPod("not-on-kubelet")
	e.addNode("dead-node", closedPort(t))
	e.addPodOn("on-dead-node", "dead-node")

	run := func(t *testing.T, conn net.Conn) {
		t.Helper()
		if _, err := transfer(t, conn, payload, payload); err != nil {
			t.FailNow()
		}
	}
	for i := range 2 {
		f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		run(t, c)
		_ = c.Close()
		f.stop()
		e.waitSessions(t, "spdy", "completed", float64(i+1))
	}
	f := startForward(t, dialer(t, dialTunnel, e.cfg, e.pfURL("", "hash")), hashPort)
	c, err := f.dial()
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	_ = c.Close()
	f.stop()
	lc, _, err := e.dialLegacy("hash", hashPort, v4Binary, nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, lc)
	_ = lc.Close()

	// Failures: refused by the gateway (unknown pod, over SPDY and over the
	// tunnel), refused by the kubelet (404 passed through), kubelet unreachable.
	for _, tc := range []struct {
		kind dialerKind
		pod  string
	}{{dialSPDY, "nope"}, {dialTunnel, "nope"}, {dialSPDY, "not-on-kubelet"}, {dialSPDY, "on-dead-node"}} {
		conn, _, err := dialer(t, tc.kind, e.cfg, e.pfURL("", tc.pod)).Dial(portforward.PortForwardProtocolV1Name)
		if err == nil {
			_ = conn.Close()
			t.Fatalf("%s to pod %s succeeded", tc.kind, tc.pod)
		}
	}

	// Refused before a session begins: not an upgrade, and a legacy request
	// with a bad port. Counted apart from sessions, by status code.
	if r := e.raw(t, "POST", pf("hash"), nil, true); r.code != 400 {
		t.Fatalf("plain POST: %d", r.code)
	}
	if _, resp, err := e.dialLegacy("hash", 0, v4Binary, nil); err == nil || resp == nil || resp.StatusCode != 400 {
		t.Fatalf("legacy ports=0: %v %v", resp, err)
	}

	e.waitIdle(t)
	m := e.scrape(t)
	expect := func(name string, want map[string]float64) {
		t.Helper()
		if got := nonZero(m.series(name)); !maps.Equal(got, want) {
			t.Errorf("%s:%s\nwant:%s", name, formatSeries(got), formatSeries(want))
		}
	}
	expect(mSessions, map[string]float64{
		"outcome=completed,protocol=spdy":             2,
		"outcome=completed,protocol=websocket":        1,
		"outcome=completed,protocol=websocket_legacy": 1,
		"outcome=rejected,protocol=spdy":              1,
		"outcome=rejected,protocol=websocket":         1,
		"outcome=backend_refused,protocol=spdy":       1,
		"outcome=backend_error,protocol=spdy":         1,
	})
	expect(mActive, map[string]float64{})
	expect("pfgateway_portforward_rejected_requests_total", map[string]float64{"code=400": 2})
	expect(mUpgrade, map[string]float64{"protocol=spdy": 2, "protocol=websocket": 1, "protocol=websocket_legacy": 1})
	expect("pfgateway_portforward_session_duration_seconds", map[string]float64{"protocol=spdy": 2, "protocol=websocket": 1, "protocol=websocket_legacy": 1})
	expect(mBackendErrors, map[string]float64{"reason=error_status": 1, "reason=dial": 1})

	// Bytes: at least the payload, at most the payload plus framing (SPDY
	// frame headers, WebSocket channel bytes, pings, the hash header and
	// digest): 1% + 64 KiB.
	sessions := map[string]float64{"spdy": 2, "websocket": 1, "websocket_legacy": 1}
	for _, p := range []string{"spdy", "websocket", "websocket_legacy"} {
		for _, dir := range []string{"up", "down"} {
			want := sessions[p] * payload
			got := m.value(mBytes, labels{"protocol": p, "direction": dir})
			if got < want || got > want*1.01+64<<10 {
				t.Errorf("%s{protocol=%q,direction=%q} = %.0f, want between %.0f and %.0f", mBytes, p, dir, got, want, want*1.01+64<<10)
			} else {
				t.Logf("%s %s: %.0f bytes for %.0f of payload (+%.3f%%)", p, dir, got, want, (got-want)/want*100)
			}
		}
	}
}
