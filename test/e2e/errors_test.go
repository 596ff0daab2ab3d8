package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/portforward"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
)

const pfPath = "/api/v1/namespaces/default/pods/%s/portforward"

func pf(pod string) string { return strings.Replace(pfPath, "%s", pod, 1) }

// errorsEnv is a gateway with a 2 s kubelet upgrade timeout and a pod for
// each failure: unscheduled, pending, on a node whose kubelet port is closed,
// on a node whose kubelet accepts and never answers, and one the kubelet does
// not know.
func errorsEnv(t *testing.T) *env {
	e := newEnv(t, func(o *options.Options) { o.Kubelet.UpgradeTimeout = 2 * time.Second })
	empty := ""
	e.addPod(devcluster.Pod{Name: "unscheduled", NodeName: &empty})
	e.addPod(devcluster.Pod{Name: "pending", Phase: "Pending", Ports: map[int32]string{hashPort: e.hash.Addr()}})
	e.addNode("dead-node", closedPort(t))
	e.addPodOn("on-dead-node", "dead-node")
	e.addNode("silent-node", silentListener(t))
	e.addPodOn("on-silent-node", "silent-node")
	e.addAPIOnlyPod("not-on-kubelet")
	// A kubelet that completes the TLS handshake, reads the upgrade request
	// and never answers it.
	e.addPod(devcluster.Pod{Name: "hung", Ports: map[int32]string{hashPort: e.hash.Addr()}})
	release := make(chan struct{})
	e.cluster.Kubelet.SetHandlerHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/portForward/default/hung" {
			return false
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	})
	t.Cleanup(func() { close(release); e.cluster.Kubelet.SetHandlerHook(nil) })
	return e
}

// TestErrors checks every refusal the gateway gives before an upgrade: the
// HTTP code, the Status reason and message, and how fast. Meanwhile a long
// transfer runs in another session and must finish byte-exact.
func TestErrors(t *testing.T) {
	e := errorsEnv(t)

	// Keep one session busy for as long as the error cases run: transfers of
	// matrixBytes each way, one after another on new connections of the same
	// forwarder, each checked byte-exact, until the cases are done.
	long := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
	stopLong, longDone := make(chan struct{}), make(chan error, 1)
	var longRounds int
	go func() {
		for {
			c, err := long.dial()
			if err != nil {
				longDone <- err
				return
			}
			_, err = transfer(t, c, matrixBytes, matrixBytes)
			_ = c.Close()
			if err != nil {
				longDone <- err
				return
			}
			longRounds++
			select {
			case <-stopLong:
				longDone <- nil
				return
			default:
			}
		}
	}()

	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		noCert     bool
		wantCode   int
		wantReason metav1.StatusReason // "" when the body is passed through from the kubelet
		wantMsg    string
		within     time.Duration // the answer must come at least this fast
		notBefore  time.Duration // … and not faster than this
	}{
		{name: "should answer 401 without a client certificate", method: "POST", path: pf("hash"), header: spdyUpgrade, noCert: true,
			wantCode: 401, wantReason: metav1.StatusReasonUnauthorized, wantMsg: "Unauthorized"},
		{name: "should answer 404 for an unknown pod", method: "POST", path: pf("nope"), header: spdyUpgrade,
			wantCode: 404, wantReason: metav1.StatusReasonNotFound, wantMsg: `pods "nope" not found`},
		{name: "should answer 400 for a pod without node", method: "POST", path: pf("unscheduled"), header: spdyUpgrade,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: "pod unscheduled does not have a host assigned"},
		{name: "should answer 400 for a pending pod", method: "POST", path: pf("pending"), header: spdyUpgrade,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: "pod is not running. Current status=Pending"},
		{name: "should answer 404 for an unknown cluster", method: "POST", path: "/clusters/nope" + pf("hash"), header: spdyUpgrade,
			wantCode: 404, wantReason: metav1.StatusReasonNotFound, wantMsg: `clusters "nope" not found`},
		{name: "should answer 403 for other API paths", method: "GET", path: "/api/v1/namespaces/default/secrets/s",
			wantCode: 403, wantReason: metav1.StatusReasonForbidden, wantMsg: "only serves port-forward"},
		{name: "should answer 403 for exec", method: "POST", path: "/api/v1/namespaces/default/pods/hash/exec", header: spdyUpgrade,
			wantCode: 403, wantReason: metav1.StatusReasonForbidden, wantMsg: "only serves port-forward"},
		{name: "should answer a 404 Status outside the API", method: "GET", path: "/ui",
			wantCode: 404, wantReason: metav1.StatusReasonNotFound, wantMsg: "the server could not find the requested resource"},
		{name: "should answer 405 for PUT on portforward", method: "PUT", path: pf("hash"), header: spdyUpgrade,
			wantCode: 405, wantReason: metav1.StatusReasonMethodNotAllowed, wantMsg: "does not allow this method"},
		{name: "should answer 400 for a POST that is not an upgrade", method: "POST", path: pf("hash"),
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: "Upgrade request required"},
		{name: "should answer 400 for legacy WebSocket ports=0", method: "GET", path: pf("hash") + "?ports=0", header: legacyUpgrade,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: `invalid port "0"`},
		{name: "should answer 400 for legacy WebSocket without ports", method: "GET", path: pf("hash"), header: legacyUpgrade,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: `query parameter "ports" is required`},
		{name: "should answer 503 naming the node when its kubelet port is closed", method: "POST", path: pf("on-dead-node"), header: spdyUpgrade,
			wantCode: 503, wantReason: metav1.StatusReasonServiceUnavailable, wantMsg: `kubelet on node "dead-node"`, within: 6 * time.Second},
		{name: "should answer 504 when the kubelet never answers", method: "POST", path: pf("on-silent-node"), header: spdyUpgrade,
			wantCode: 504, wantReason: metav1.StatusReasonTimeout, wantMsg: `timed out waiting for the kubelet on node "silent-node"`,
			notBefore: 1500 * time.Millisecond, within: 6 * time.Second},
		{name: "should answer 504 when the kubelet never answers the upgrade request", method: "POST", path: pf("hung"), header: spdyUpgrade,
			wantCode: 504, wantReason: metav1.StatusReasonTimeout, wantMsg: `timed out waiting for the kubelet on node "dev-node"`,
			notBefore: 1500 * time.Millisecond, within: 6 * time.Second},
		{name: "should pass through the kubelet's 404 for a pod it does not know", method: "POST", path: pf("not-on-kubelet"), header: spdyUpgrade,
			wantCode: 404, wantMsg: "pod does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.raw(t, tt.method, tt.path, tt.header, !tt.noCert)
			if r.code != tt.wantCode {
				t.Fatalf("code %d, want %d; body %q", r.code, tt.wantCode, r.body)
			}
			switch {
			case tt.wantReason == "":
				if !strings.Contains(r.body, tt.wantMsg) {
					t.Errorf("body %q, want it to contain %q", r.body, tt.wantMsg)
				}
			case r.status == nil:
				t.Errorf("body is not a metav1.Status: %q", r.body)
			case r.status.Code != int32(tt.wantCode) || r.status.Reason != tt.wantReason || !strings.Contains(r.status.Message, tt.wantMsg):
				t.Errorf("Status code %d reason %q message %q; want %d %q containing %q",
					r.status.Code, r.status.Reason, r.status.Message, tt.wantCode, tt.wantReason, tt.wantMsg)
			}
			if tt.within > 0 && r.elapsed > tt.within {
				t.Errorf("answered after %v, want within %v", r.elapsed, tt.within)
			}
			if r.elapsed < tt.notBefore {
				t.Errorf("answered after %v, before the %v upgrade timeout could expire", r.elapsed, tt.notBefore)
			}
		})
	}

	t.Run("client-go sees the Status message", func(t *testing.T) { clientGoErrors(t, e) })

	t.Run("should serve /clusters/default like the bare path", func(t *testing.T) {
		f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("/clusters/default", "hash")), hashPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
	})
	t.Run("should serve kubectl with server https://gw/clusters/default", func(t *testing.T) {
		// Discovery, the pod GET and the upgrade all go through the prefix.
		c := e.kubectlDial(t, kubectlBinary(t, 33), "hash", hashPort, "--server", e.cfg.Host+"/clusters/default")
		transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
	})

	close(stopLong)
	select {
	case err := <-longDone:
		if err != nil {
			t.Fatalf("the transfers beside the error cases failed: %v", err)
		}
		t.Logf("beside the error cases, one session moved %d × %d MiB each way, byte-exact", longRounds, matrixBytes>>20)
	case <-time.After(transferTimeout(matrixBytes, matrixBytes) + 10*time.Second):
		t.Fatal("the transfer beside the error cases did not finish")
	}
}

// TestDialTimeoutBoundsTLSHandshake checks --kubelet-dial-timeout bounds
// the TLS handshake too, as its help says, and not only the TCP connect: a
// kubelet that accepts and stays silent is given up on after the dial
// timeout, not after the (much longer) upgrade timeout.
func TestDialTimeoutBoundsTLSHandshake(t *testing.T) {
	e := newEnv(t, func(o *options.Options) {
		o.Kubelet.DialTimeout = time.Second
		o.Kubelet.UpgradeTimeout = 30 * time.Second
	})
	e.addNode("silent-node", silentListener(t))
	e.addPodOn("on-silent-node", "silent-node")
	r := e.raw(t, "POST", pf("on-silent-node"), spdyUpgrade, true)
	expectStatus(t, r, 504, metav1.StatusReasonTimeout, `timed out waiting for the kubelet on node "silent-node"`)
	if r.elapsed < 800*time.Millisecond || r.elapsed > 5*time.Second {
		t.Errorf("answered after %v, want about the 1s dial timeout", r.elapsed)
	}
}

// clientGoErrors checks what client-go's SPDY and WebSocket-tunnel dialers
// report for refusals: the gateway's Status message (or the kubelet's text,
// passed through).
func clientGoErrors(t *testing.T, e *env) {
	tests := []struct {
		pod  string
		want string
	}{
		{"nope", `pods "nope" not found`},
		{"unscheduled", "pod unscheduled does not have a host assigned"},
		{"pending", "unable to forward port because pod is not running. Current status=Pending"},
		{"on-dead-node", `error connecting to the kubelet on node "dead-node"`},
		{"on-silent-node", `timed out waiting for the kubelet on node "silent-node"`},
		{"not-on-kubelet", "pod does not exist"},
	}
	for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
		for _, tt := range tests {
			t.Run(string(kind)+"/"+tt.pod, func(t *testing.T) {
				conn, _, err := dialer(t, kind, e.cfg, e.pfURL("", tt.pod)).Dial(portforward.PortForwardProtocolV1Name)
				if err == nil {
					_ = conn.Close()
					t.Fatal("dial succeeded, want an error")
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q, want it to contain %q", err, tt.want)
				}
				if kind == dialTunnel && !shouldFallback(err) {
					t.Errorf("error %q is not an upgrade failure: kubectl would not fall back to SPDY", err)
				}
			})
		}
	}
}
