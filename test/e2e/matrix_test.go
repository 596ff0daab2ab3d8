package e2e

import (
	"net"
	"os"
	"testing"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

// TestClientMatrix moves matrixBytes down and up through the gateway with
// every kind of client and checks every byte, then checks the gateway counted
// the session under the client's protocol, and the forwarded connection when
// the stream-aware splice ran. Both splice modes run the whole matrix.
func TestClientMatrix(t *testing.T) {
	for _, mode := range []string{options.SpliceStreams, options.SpliceOpaque} {
		t.Run(mode, func(t *testing.T) { clientMatrix(t, mode) })
	}
}

func clientMatrix(t *testing.T, mode string) {
	e := newEnv(t, func(o *options.Options) { o.Streams.SpliceMode = mode })
	type open func(t *testing.T) (conn net.Conn, done func())
	viaForward := func(kind dialerKind) open {
		return func(t *testing.T) (net.Conn, func()) {
			f := startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "hash")), hashPort)
			c, err := f.dial()
			if err != nil {
				t.Fatal(err)
			}
			return c, f.stop
		}
	}
	viaLegacy := func(sub string) open {
		return func(t *testing.T) (net.Conn, func()) {
			c, resp, err := e.dialLegacy("hash", hashPort, sub, nil)
			if err != nil {
				t.Fatalf("legacy WebSocket dial: %v (response %v)", err, resp)
			}
			return c, func() {
				if !c.portsSeen() {
					t.Error("the server did not start both channels with the port")
				}
			}
		}
	}
	viaKubectl := func(minor int) open {
		return func(t *testing.T) (net.Conn, func()) {
			bin := dispatcherKubectl
			if minor > 0 {
				bin = kubectlBinary(t, minor)
			} else if _, err := os.Stat(bin); err != nil {
				t.Skipf("no %s on this machine: %v", bin, err)
			}
			addr, run, err := e.kubectlPortForward(t, bin, "hash", hashPort)
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			return c, run.Kill
		}
	}
	tests := []struct {
		name     string
		open     open
		bytes    int64
		protocol string
	}{
		{name: "client-go SPDY dialer", open: viaForward(dialSPDY), bytes: matrixBytes, protocol: "spdy"},
		{name: "client-go WebSocket tunnel dialer", open: viaForward(dialTunnel), bytes: matrixBytes, protocol: "websocket"},
		{name: "client-go fallback dialer", open: viaForward(dialFallback), bytes: matrixBytes, protocol: "websocket"},
		{name: "legacy WebSocket v4.channel.k8s.io", open: viaLegacy(v4Binary), bytes: matrixBytes, protocol: "websocket_legacy"},
		{name: "legacy WebSocket v4.base64.channel.k8s.io", open: viaLegacy(v4Base64), bytes: base64Bytes, protocol: "websocket_legacy"},
		{name: "kubectl 1.27", open: viaKubectl(27), bytes: matrixBytes, protocol: "spdy"},
		{name: "kubectl 1.33", open: viaKubectl(33), bytes: matrixBytes, protocol: "websocket"},
		// The machine's /usr/bin/kubectl picks its binary by the server's
		// /version minor (the dev cluster says 1.33), through the gateway.
		{name: "kubectl dispatcher", open: viaKubectl(0), bytes: matrixBytes, protocol: "websocket"},
	}
	if raceEnabled {
		t.Logf("race detector on: %d MiB per case instead of 64 (see sizes_race_test.go)", matrixBytes>>20)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := e.scrape(t)
			before := m.value(mSessions, labels{"protocol": tt.protocol, "outcome": "completed"})
			fwdLabels := labels{"protocol": tt.protocol, "outcome": "client_closed"}
			fwdBefore := m.value(mForwards, fwdLabels)
			conn, done := tt.open(t)
			res, err := transfer(t, conn, tt.bytes, tt.bytes)
			_ = conn.Close()
			done()
			if err != nil {
				return
			}
			t.Logf("%s: %d MiB each way in %v: %.1f MiB/s (both directions)", tt.name, tt.bytes>>20, res.Elapsed.Round(1e6), res.MiBps())
			e.waitSessions(t, tt.protocol, "completed", before+1)
			e.waitIdle(t)
			wantFwd := fwdBefore
			if mode == options.SpliceStreams && tt.protocol != "websocket_legacy" {
				wantFwd++
			}
			if got := e.scrape(t).value(mForwards, fwdLabels); got != wantFwd {
				t.Errorf("%s{protocol=%q,outcome=client_closed} = %.0f, want %.0f", mForwards, tt.protocol, got, wantFwd)
			}
		})
	}
}
