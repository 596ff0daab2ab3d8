package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
)

// redirectEnv is a gateway whose kubelet answers 302 for three pods:
// redir-same → the same kubelet's path for pod hash, redir-other → another
// host, redir-loop → itself.
func redirectEnv(t *testing.T, follow bool) *env {
	e := newEnv(t, func(o *options.Options) { o.Kubelet.FollowRedirects = follow })
	for _, p := range []string{"redir-same", "redir-other", "redir-loop"} {
		e.addPod(devcluster.Pod{Name: p, Ports: map[int32]string{hashPort: e.hash.Addr()}})
	}
	port := strconv.Itoa(e.cluster.Kubelet.Port())
	targets := map[string]string{
		"/portForward/default/redir-same":  "https://127.0.0.1:" + port + "/portForward/default/hash",
		"/portForward/default/redir-other": "https://127.0.0.2:" + port + "/portForward/default/hash",
		"/portForward/default/redir-loop":  "https://127.0.0.1:" + port + "/portForward/default/redir-loop",
	}
	e.cluster.Kubelet.SetHandlerHook(func(w http.ResponseWriter, r *http.Request) bool {
		to, ok := targets[r.URL.Path]
		if !ok {
			return false
		}
		w.Header().Set("Location", to)
		w.WriteHeader(http.StatusFound)
		return true
	})
	t.Cleanup(func() { e.cluster.Kubelet.SetHandlerHook(nil) })
	return e
}

// TestKubeletRedirects checks the gateway's own redirect following (the
// upgrade-aware proxy dropped it in v0.24): same host only, bounded, and
// off by default.
func TestKubeletRedirects(t *testing.T) {
	t.Run("following", func(t *testing.T) {
		e := redirectEnv(t, true)
		t.Run("should follow a 302 to the same host and forward byte-exact", func(t *testing.T) {
			f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "redir-same")), hashPort)
			c, err := f.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			transfer(t, c, 8<<20, 8<<20) //nolint:errcheck // reported by transfer
			if n := kubeletRequests(e, "hash"); n != 1 {
				t.Errorf("the kubelet saw %d requests for the redirect's target, want 1", n)
			}
		})
		t.Run("should refuse a 302 to another host", func(t *testing.T) {
			r := e.raw(t, "POST", pf("redir-other"), spdyUpgrade, true)
			expectStatus(t, r, 503, metav1.StatusReasonServiceUnavailable, "refusing to follow a redirect to another host (https://127.0.0.2:")
		})
		t.Run("should stop a redirect loop after MaxRedirects", func(t *testing.T) {
			r := e.raw(t, "POST", pf("redir-loop"), spdyUpgrade, true)
			expectStatus(t, r, 503, metav1.StatusReasonServiceUnavailable, "stopped after 5 redirects")
			if n, want := kubeletRequests(e, "redir-loop"), e.opts.Kubelet.MaxRedirects+1; n != want {
				t.Errorf("the kubelet saw %d requests in the loop, want %d", n, want)
			}
		})
		m := e.scrape(t)
		if got := m.series(mBackendErrors); got["reason=redirect_refused"] != 1 || got["reason=too_many_redirects"] != 1 {
			t.Errorf("backend errors:%s\nwant one redirect_refused and one too_many_redirects", formatSeries(got))
		}
	})
	t.Run("not following", func(t *testing.T) {
		e := redirectEnv(t, false)
		r := e.raw(t, "POST", pf("redir-same"), spdyUpgrade, true)
		// The API server's upgrade-aware proxy answers a non-101 below 400
		// with a 500 "invalid upgrade response: status code N".
		expectStatus(t, r, 500, metav1.StatusReasonInternalError, "invalid upgrade response: status code 302")
		if n := kubeletRequests(e, "hash"); n != 0 {
			t.Errorf("the redirect was followed: the kubelet saw %d requests for its target", n)
		}
	})
}

// expectStatus checks a raw answer is a Status with code, reason and a
// message containing msg.
func expectStatus(t *testing.T, r rawResponse, code int, reason metav1.StatusReason, msg string) {
	t.Helper()
	if r.code != code || r.status == nil || r.status.Code != int32(code) || r.status.Reason != reason || !strings.Contains(r.status.Message, msg) {
		t.Errorf("got %d %q; want a Status %d %q with a message containing %q", r.code, r.body, code, reason, msg)
	}
}
