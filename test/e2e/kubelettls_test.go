package e2e

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestKubeletTLSResumption: the gateway's later sessions to a kubelet resume
// the first one's TLS session (the kubelet sees a resumed handshake, and
// still its client certificate's CN), over either client protocol, and
// carry their bytes intact.
func TestKubeletTLSResumption(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var resumed []bool
	var cns []string
	e.cluster.Kubelet.SetHandlerHook(func(_ http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/portForward/") {
			mu.Lock()
			resumed = append(resumed, r.TLS != nil && r.TLS.DidResume)
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				cns = append(cns, r.TLS.PeerCertificates[0].Subject.CommonName)
			}
			mu.Unlock()
		}
		return false // served as usual
	})
	t.Cleanup(func() { e.cluster.Kubelet.SetHandlerHook(nil) })

	for _, kind := range []dialerKind{dialSPDY, dialTunnel, dialSPDY} {
		f := startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "hash")), hashPort)
		if _, err := transferAll(t, 1, f.dial, 1<<20, 1<<20); err != nil {
			t.FailNow()
		}
		f.stop()
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []bool{false, true, true}; !slices.Equal(resumed, want) {
		t.Errorf("kubelet handshakes resumed: %v, want %v", resumed, want)
	}
	if len(cns) != 3 || cns[0] == "" || cns[1] != cns[0] || cns[2] != cns[0] {
		t.Errorf("client certificate CNs the kubelet saw: %q, want the gateway's three times", cns)
	}
}
