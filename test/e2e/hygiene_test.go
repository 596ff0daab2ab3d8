package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// callerCredentials are headers a caller may send that must never leave
// the gateway: its bearer token and front-proxy identity. (Impersonate-*
// headers are refused with 403 before anything else: authz_test.go.)
var callerCredentials = http.Header{
	"Authorization":  {"Bearer x"},
	"X-Remote-User":  {"admin"},
	"X-Remote-Group": {"system:masters"},
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// withCallerCredentials returns cfg whose every request also carries
// callerCredentials, alongside the client certificate.
func withCallerCredentials(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			for k, v := range callerCredentials {
				r.Header[k] = v
			}
			return rt.RoundTrip(r)
		})
	}
	return c
}

// credentialIDExtra is the impersonation header of the user extra
// authentication.kubernetes.io/credential-id, escaped as client-go does.
const credentialIDExtra = "Impersonate-Extra-Authentication.kubernetes.io%2fcredential-Id"

// leakedCredentials names the caller-credential headers present in h.
func leakedCredentials(h http.Header) []string {
	var out []string
	for k := range h {
		ck := http.CanonicalHeaderKey(k)
		if ck == "Authorization" || strings.HasPrefix(ck, "Impersonate-") || strings.HasPrefix(ck, "X-Remote-") {
			out = append(out, ck+": "+strings.Join(h[k], ","))
		}
	}
	return out
}

// TestCallerCredentialsStayAtTheGateway sends a bearer token, impersonation
// and front-proxy headers with every kind of request (SPDY, tunnel, legacy
// WebSocket, kubectl, and the read-only API relay) and checks that neither
// the kubelet nor the API server ever received them, that the kubelet saw the
// gateway's own client certificate, and that X-Forwarded-For names the caller.
func TestCallerCredentialsStayAtTheGateway(t *testing.T) {
	e := newEnv(t)
	cfg := withCallerCredentials(e.cfg)

	// The relay: the same GET kubectl makes before port-forwarding.
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Get(context.Background(), "hash", metav1.GetOptions{}); err != nil {
		t.Fatalf("GET pod through the gateway: %v", err)
	}

	for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
		f := startForward(t, dialer(t, kind, cfg, e.pfURL("", "hash")), hashPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
		_ = c.Close()
		f.stop()
	}
	lc, _, err := e.dialLegacy("hash", hashPort, v4Binary, callerCredentials)
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, lc, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
	_ = lc.Close()

	kubectlRuns := 0
	t.Run("kubectl 1.33 with --token", func(t *testing.T) {
		// kubectl sends --token as Authorization next to the kubeconfig's
		// client certificate.
		c := e.kubectlDial(t, kubectlBinary(t, 33), "hash", hashPort, "--token", "x")
		transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
		kubectlRuns = 1
	})

	reqs := e.cluster.Kubelet.Requests()
	if want := 3 + kubectlRuns; len(reqs) < want {
		t.Fatalf("the kubelet saw %d requests, want at least %d", len(reqs), want)
	}
	for _, r := range reqs {
		if leaked := leakedCredentials(r.Header); len(leaked) > 0 {
			t.Errorf("kubelet request %s %s carried caller credentials: %v", r.Method, r.URL, leaked)
		}
		if r.ClientCN != "pfgateway" {
			t.Errorf("kubelet request %s %s: client certificate CN %q, want the gateway's %q", r.Method, r.URL, r.ClientCN, "pfgateway")
		}
		if xff := r.Header.Get("X-Forwarded-For"); !strings.Contains(xff, "127.0.0.1") {
			t.Errorf("kubelet request %s %s: X-Forwarded-For %q does not name the caller", r.Method, r.URL, xff)
		}
	}
	relayed := false
	for _, r := range e.cluster.APIServer.Requests() {
		// The relay impersonates the caller, alice, and no one else.
		h := r.Header.Clone()
		if u, g := h.Values("Impersonate-User"), h.Values("Impersonate-Group"); len(u) > 0 {
			if strings.Join(u, ",") != "alice" || strings.Join(g, ",") != "devs,system:authenticated" {
				t.Errorf("API server request %s %s impersonated %v in %v, want alice in devs,system:authenticated", r.Method, r.Path, u, g)
			}
			h.Del("Impersonate-User")
			h.Del("Impersonate-Group")
			// The x509 authenticator's credential id: the certificate's hash, not a secret.
			if v := h.Get(credentialIDExtra); strings.HasPrefix(v, "X509SHA256=") {
				h.Del(credentialIDExtra)
			}
		}
		if leaked := leakedCredentials(h); len(leaked) > 0 {
			t.Errorf("API server request %s %s carried caller credentials: %v", r.Method, r.Path, leaked)
		}
		relayed = relayed || strings.HasPrefix(r.Path, "/api/v1/namespaces/default/pods/hash")
	}
	if !relayed {
		t.Error("the API server never saw the relayed GET of pod hash")
	}
}
