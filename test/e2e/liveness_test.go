package e2e

import (
	"bufio"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
)

// TestLiveness runs the gateway with short kubelet ping settings against the
// dev kubelet (which echoes pings, as every spdystream peer does) and against
// a frozen one: it answers the upgrade, then never reads or writes again,
// as a kubelet behind a dropped network path looks to the gateway.
func TestLiveness(t *testing.T) {
	const interval, timeout = 300 * time.Millisecond, 500 * time.Millisecond
	logs := captureLogs(t)
	e := newEnv(t, func(o *options.Options) {
		o.Streams.MetricsPorts = []int{hashPort}
		o.Liveness.KubeletPingInterval, o.Liveness.KubeletPingTimeout = interval, timeout
		// The session ending with its kubelet is what is tested here;
		// faults_test.go tests it going on (--kubelet-reconnect).
		o.Reconnect.Enabled = false
	})
	e.addPod(devcluster.Pod{Name: "frozen", Ports: map[int32]string{hashPort: e.hash.Addr()}})
	var mu sync.Mutex
	var frozen []net.Conn
	e.cluster.Kubelet.SetHandlerHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/portForward/default/frozen" {
			return false
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return true
		}
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n")
		_ = brw.Flush()
		mu.Lock()
		frozen = append(frozen, conn) // held open, never read
		mu.Unlock()
		return true
	})
	t.Cleanup(func() {
		e.cluster.Kubelet.SetHandlerHook(nil)
		mu.Lock()
		defer mu.Unlock()
		for _, c := range frozen {
			_ = c.Close()
		}
	})

	t.Run("a kubelet that answers pings keeps the session", func(t *testing.T) {
		f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
		for i := range 3 {
			c, err := f.dial()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := transfer(t, c, 1<<10, 1<<10); err != nil {
				t.FailNow()
			}
			_ = c.Close()
			// Several ping intervals with no traffic; client-go's own pings
			// (every 5s) do not come in that time.
			select {
			case err := <-f.done:
				t.Fatalf("the session ended after %d idle periods: %v", i, err)
			case <-time.After(3 * interval):
			}
		}
		f.stop()
	})

	t.Run("a frozen kubelet ends the session within interval+timeout", func(t *testing.T) {
		f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "frozen")), hashPort)
		start := time.Now()
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("into the void"))
		bound := interval + timeout + 2*time.Second // the client's own reaction and a loaded machine
		select {
		case err := <-f.done:
			if err == nil || !strings.Contains(err.Error(), "lost connection to pod") {
				t.Errorf("ForwardPorts ended with %v, want the lost-connection error", err)
			}
		case <-time.After(bound):
			t.Fatalf("the session outlived a frozen kubelet by %v", bound)
		}
		// The forwarded connection was open: the gateway read until EOF.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := bufio.NewReader(c).ReadByte(); err == nil {
			t.Error("the local connection got bytes from a frozen kubelet")
		}
		t.Logf("session ended %v after the first forward", time.Since(start).Round(time.Millisecond))
	})

	e.waitIdle(t)
	want := map[string]float64{
		fmt.Sprintf("outcome=client_closed,port=%d,protocol=spdy", hashPort):        3,
		fmt.Sprintf("outcome=kubelet_disconnected,port=%d,protocol=spdy", hashPort): 1,
	}
	if got := nonZero(e.scrape(t).series(mForwards)); !maps.Equal(got, want) {
		t.Errorf("%s:%s\nwant:%s\nlog:\n%s", mForwards, formatSeries(got), formatSeries(want), logs.String())
	}
	if why := fmt.Sprintf("the kubelet did not answer a ping within %v", timeout); !strings.Contains(logs.String(), why) {
		t.Errorf("no session ended with %q:\n%s", why, logs.String())
	}
}

// TestLivenessWebSocketTunnel opens SPDY-over-WebSocket tunnels with a raw
// gorilla client: one reads (so gorilla answers the gateway's pings) and
// keeps its session, one never reads and loses it within interval+timeout.
func TestLivenessWebSocketTunnel(t *testing.T) {
	const interval, timeout = 300 * time.Millisecond, 500 * time.Millisecond
	logs := captureLogs(t)
	e := newEnv(t, func(o *options.Options) {
		o.Liveness.WebSocketPingInterval, o.Liveness.WebSocketPingTimeout = interval, timeout
	})
	dial := func() *gwebsocket.Conn {
		u := e.pfURL("", "hash")
		u.Scheme = "wss"
		d := gwebsocket.Dialer{TLSClientConfig: e.tlsConfig(true), Subprotocols: []string{"SPDY/3.1+portforward.k8s.io"}, HandshakeTimeout: 30 * time.Second}
		ws, resp, err := d.Dial(u.String(), nil)
		if err != nil {
			t.Fatalf("tunnel upgrade: %v", err)
		}
		_ = resp.Body.Close()
		t.Cleanup(func() { _ = ws.Close() })
		return ws
	}

	answering := dial()
	pings := make(chan struct{}, 64)
	pong := answering.PingHandler()
	answering.SetPingHandler(func(d string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return pong(d)
	})
	readEnd := make(chan error, 1)
	go func() {
		for {
			if _, _, err := answering.NextReader(); err != nil {
				readEnd <- err
				return
			}
		}
	}()
	_ = dial() // never reads: the gateway's pings go unanswered
	start := time.Now()
	eventually(t, interval+timeout+5*time.Second, "the silent tunnel's session to end", func() bool {
		return e.gw.Sessions.Len() == 1
	})
	if d := time.Since(start); d < interval+timeout-timeout/4-50*time.Millisecond {
		t.Errorf("the silent tunnel ended after %v, before its allowance", d)
	}
	if why := "the WebSocket client answered no ping"; !strings.Contains(logs.String(), why) {
		t.Errorf("no session ended with %q", why)
	}
	select {
	case err := <-readEnd:
		t.Fatalf("the answering tunnel ended: %v", err)
	case <-time.After(2 * (interval + timeout)):
	}
	if n := e.gw.Sessions.Len(); n != 1 || len(pings) < 3 {
		t.Fatalf("%d sessions after %d pings, want the answering one alive after several", n, len(pings))
	}
}
