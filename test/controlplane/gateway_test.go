package controlplane

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app"
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// gateway is pfgateway running in-process in front of the real API server.
type gateway struct {
	c    *controlPlane
	gw   *app.Gateway
	addr string // https://127.0.0.1:N
}

// startGateway runs the gateway configured by flags, as its command line
// would be, with extra flags after the ones every test needs. Driving it
// by flag name keeps this tier independent of the options' Go fields; a
// test needing a flag this build does not have is skipped, and runs once
// the flag exists.
func (c *controlPlane) startGateway(t *testing.T, extra ...string) *gateway {
	t.Helper()
	o := options.NewOptions()
	fs := pflag.NewFlagSet("pfgateway", pflag.ContinueOnError)
	o.AddFlags(fs)
	for _, f := range extra {
		name, _, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if fs.Lookup(name) == nil {
			t.Skipf("needs --%s (issue 4 authn/authz branch)", name)
		}
	}
	args := append([]string{
		"--bind-address=127.0.0.1", "--secure-port=0",
		"--tls-cert-file=" + c.servingCert, "--tls-private-key-file=" + c.servingKey,
		"--client-ca-file=" + c.caFile,
		"--kubeconfig=" + c.gatewayKubeconfig,
		"--kubelet-client-certificate=" + c.kubeletCert, "--kubelet-client-key=" + c.kubeletKey,
		"--kubelet-certificate-authority=" + c.caFile,
		"--metrics-bind-address=127.0.0.1:0",
		"--shutdown-grace-period=2s",
	}, extra...)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("gateway flags %q: %v", args, err)
	}
	cfg, err := app.Complete(o)
	if err != nil {
		t.Fatalf("app.Complete: %v", err)
	}
	g := &gateway{c: c}
	if g.gw, err = app.New(cfg); err != nil {
		t.Fatalf("app.New: %v", err)
	}
	g.addr = "https://" + g.gw.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- g.gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("gateway Run did not return within 20s of its context's end")
		}
	})
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for getOK(hc, "http://"+g.gw.AdminAddr()+"/readyz") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("gateway /readyz not 200 after 60s: %v", getOK(hc, "http://"+g.gw.AdminAddr()+"/readyz"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return g
}

// user issues a client certificate for name (O = groups).
func (c *controlPlane) user(t *testing.T, name string, groups ...string) *pki.KeyPair {
	t.Helper()
	kp, err := c.ca.Issue(pki.IssueOptions{CommonName: name, Organization: groups, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// kubeconfig writes a kubeconfig for server with kp's certificate.
func (c *controlPlane) kubeconfig(t *testing.T, server string, kp *pki.KeyPair) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := devcluster.WriteKubeconfig(p, server, c.ca.CertPEM, kp); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenKubeconfig writes a kubeconfig for server with a bearer token.
func (c *controlPlane) tokenKubeconfig(t *testing.T, server, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cp"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.ca.CertPEM}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["cp"] = &clientcmdapi.Context{Cluster: "cp", AuthInfo: "user", Namespace: namespace}
	cfg.CurrentContext = "cp"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenConfig is a client config for server with a bearer token.
func (c *controlPlane) tokenConfig(server, token string) *rest.Config {
	return &rest.Config{Host: server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.CertPEM}}
}

// pfPath is the portforward subresource of the test pod.
const pfPath = "/api/v1/namespaces/" + namespace + "/pods/" + podName + "/portforward"

// rawStatus sends a plain POST to the portforward path of server with cfg's
// credentials (no upgrade headers: authentication and authorization come
// first, on the gateway as on the API server) and decodes the Status.
func rawStatus(t *testing.T, cfg *rest.Config) (int, metav1.Status) {
	t.Helper()
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: rt, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(cfg.Host+pfPath, "", nil)
	if err != nil {
		t.Fatalf("POST %s%s: %v", cfg.Host, pfPath, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("POST %s%s: %d, body is no Status: %v\n%s", cfg.Host, pfPath, resp.StatusCode, err, body)
	}
	return resp.StatusCode, st
}

// forwardClientGo runs client-go's SPDY port-forward (kubectl 1.27–1.30's
// dialer) to the test pod through server and returns the local address;
// it stops at the end of the test.
func forwardClientGo(t *testing.T, cfg *rest.Config) (string, error) {
	t.Helper()
	rt, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host + pfPath)
	if err != nil {
		t.Fatal(err)
	}
	d := spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddresses(d, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(podPort)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(stop) })
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("ForwardPorts did not return 10s after stop")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		once.Do(func() { close(stop) })
		done <- err // for the cleanup
		return "", err
	case <-time.After(30 * time.Second):
		t.Fatal("port forward not ready after 30s")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))), nil
}

// payload is what each test moves each way through a forward.
const payload = 4 << 20

// exchangeVia dials addr and checks a payload each way.
func exchangeVia(t *testing.T, addr string, seed uint64) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(conn, payload, payload, seed); err != nil {
		t.Fatalf("exchange of %d bytes each way through %s: %v", payload, addr, err)
	}
}

// wantStatus checks a Status against code, reason and message.
func wantStatus(t *testing.T, where string, gotCode int, got metav1.Status, code int32, reason metav1.StatusReason, message string) {
	t.Helper()
	if gotCode != int(code) || got.Code != code || got.Reason != reason || got.Message != message || got.Status != metav1.StatusFailure {
		t.Errorf("%s: got HTTP %d, Status{code %d, reason %q, message %q, status %q}; want %d, %q, %q, Failure",
			where, gotCode, got.Code, got.Reason, got.Message, got.Status, code, reason, message)
	}
}
