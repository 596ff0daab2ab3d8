package e2e

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/devcluster"
)

// refuseFirst makes the kubelet answer 404 to the first port-forward request
// for pod, as if the pod were not there yet, and serve later ones.
func refuseFirst(t *testing.T, e *env, pod string) *atomic.Int32 {
	var refused atomic.Int32
	path := "/portForward/default/" + pod
	e.cluster.Kubelet.SetHandlerHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == path && refused.CompareAndSwap(0, 1) {
			http.Error(w, "pod does not exist", http.StatusNotFound)
			return true
		}
		return false
	})
	t.Cleanup(func() { e.cluster.Kubelet.SetHandlerHook(nil) })
	return &refused
}

// kubeletRequests counts the requests the kubelet recorded for pod.
func kubeletRequests(e *env, pod string) int {
	n := 0
	for _, r := range e.cluster.Kubelet.Requests() {
		if strings.HasPrefix(r.URL, "/portForward/default/"+pod) {
			n++
		}
	}
	return n
}

// TestWebSocketFallback checks that a kubelet refusal reaches WebSocket
// clients as a non-101 handshake answer, which is what makes kubectl ≥1.31
// and client-go's fallback dialer retry over SPDY.
func TestWebSocketFallback(t *testing.T) {
	e := newEnv(t)
	e.addAPIOnlyPod("not-on-kubelet")
	for _, p := range []string{"flaky", "flaky2"} {
		e.addPod(devcluster.Pod{Name: p, Ports: map[int32]string{hashPort: e.hash.Addr()}})
	}

	t.Run("kubectl 1.33 falls back to SPDY and reports the kubelet's refusal", func(t *testing.T) {
		_, run, err := e.kubectlPortForward(t, kubectlBinary(t, 33), "not-on-kubelet", hashPort)
		if err == nil {
			t.Fatalf("kubectl forwarded a pod the kubelet does not know; stdout:\n%s", run.Stdout)
		}
		if !run.Wait(10 * time.Second) {
			t.Fatal("kubectl did not exit")
		}
		if msg := run.Stderr.String(); !strings.Contains(msg, "pod does not exist") {
			t.Errorf("kubectl's stderr %q does not carry the kubelet's message", msg)
		}
		e.waitSessions(t, "websocket", "backend_refused", 1)
		e.waitSessions(t, "spdy", "backend_refused", 1)
		if n := kubeletRequests(e, "not-on-kubelet"); n != 2 {
			t.Errorf("the kubelet saw %d requests, want 2 (the tunnel's, then SPDY's)", n)
		}
	})

	t.Run("kubectl 1.33 forwards over SPDY after the WebSocket attempt is refused", func(t *testing.T) {
		bin := kubectlBinary(t, 33)
		m := e.scrape(t)
		wsRefused := m.value(mSessions, labels{"protocol": "websocket", "outcome": "backend_refused"})
		spdyDone := m.value(mSessions, labels{"protocol": "spdy", "outcome": "completed"})
		refused := refuseFirst(t, e, "flaky")
		addr, run, err := e.kubectlPortForward(t, bin, "flaky", hashPort)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, err = transfer(t, c, 8<<20, 8<<20)
		_ = c.Close()
		run.Kill()
		if err != nil {
			return
		}
		if refused.Load() != 1 {
			t.Fatal("the kubelet hook refused nothing")
		}
		e.waitSessions(t, "websocket", "backend_refused", wsRefused+1)
		e.waitSessions(t, "spdy", "completed", spdyDone+1)
		e.waitIdle(t)
	})

	t.Run("client-go's fallback dialer forwards over SPDY after the tunnel is refused", func(t *testing.T) {
		m := e.scrape(t)
		wsRefused := m.value(mSessions, labels{"protocol": "websocket", "outcome": "backend_refused"})
		spdyDone := m.value(mSessions, labels{"protocol": "spdy", "outcome": "completed"})
		refuseFirst(t, e, "flaky2")
		f := startForward(t, dialer(t, dialFallback, e.cfg, e.pfURL("", "flaky2")), hashPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		_, err = transfer(t, c, 8<<20, 8<<20)
		_ = c.Close()
		f.stop()
		if err != nil {
			return
		}
		e.waitSessions(t, "websocket", "backend_refused", wsRefused+1)
		e.waitSessions(t, "spdy", "completed", spdyDone+1)
	})
}
