package e2e

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/klog/v2"
	streamhttp "k8s.io/streaming/pkg/httpstream"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app"
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/hashpod"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

var showLogs = flag.Bool("e2e.logs", false, "show the gateway's, kubelet's and client-go's klog output")

// hashPort is the container port of pod default/hash; hashPorts are all of
// its ports, each served by the same hash server.
const hashPort = 7000

var hashPorts = []int{hashPort, 7002, 7003}

func TestMain(m *testing.M) {
	flag.Parse()
	if !*showLogs {
		// The gateway logs one line per session and client-go logs every
		// expected error; keep `go test -v` readable unless asked.
		fs := flag.NewFlagSet("klog", flag.PanicOnError)
		klog.InitFlags(fs)
		_ = fs.Set("logtostderr", "false")
		_ = fs.Set("stderrthreshold", "FATAL") // errors would still reach stderr
		klog.SetOutput(io.Discard)
	}
	before := runtimeGoroutines()
	code := m.Run()
	if code == 0 {
		code = checkPackageLeaks(before)
	}
	os.Exit(code)
}

// env is one dev cluster with a running gateway in front of it.
type env struct {
	t       *testing.T
	cluster *devcluster.Cluster
	hash    *hashpod.Server
	gw      *app.Gateway
	opts    *options.Options

	cancel context.CancelFunc
	runErr chan error // receives Run's result once
	stop   sync.Once

	user       *pki.KeyPair
	cfg        *rest.Config // alice's client config for the gateway
	kubeconfig string
}

// newEnv starts a dev cluster with pod default/hash and a gateway on
// 127.0.0.1:0 (admin on 127.0.0.1:0); tweak adjusts the gateway's options
// before Complete. Everything stops at the end of the test.
// e2eLinger is the test kubelet's linger in this tier.
const e2eLinger = 10 * time.Second

func newEnv(t *testing.T, tweak ...func(*options.Options)) *env {
	t.Helper()
	dir := t.TempDir()
	// The hash pod closes first; the kubelet then waits its linger for the
	// client's FIN before it closes the stream. The tests expect that FIN
	// to come first (outcome client_closed), which containerd's 1 s linger
	// does not guarantee on a loaded CI machine.
	cl, err := devcluster.Start(devcluster.Options{Dir: dir, GitVersion: "v1.33.0", ForwardLinger: e2eLinger})
	if err != nil {
		t.Fatalf("devcluster.Start: %v", err)
	}
	t.Cleanup(cl.Close)
	e := &env{t: t, cluster: cl, hash: startHashPod(t)}
	ports := map[int32]string{}
	for _, p := range hashPorts {
		ports[int32(p)] = e.hash.Addr()
	}
	e.addPod(devcluster.Pod{Name: "hash", Ports: ports})

	o := options.NewOptions()
	o.Serving.BindAddress = net.ParseIP("127.0.0.1")
	o.Serving.SecurePort = 0
	f := cl.Files
	o.Serving.TLSCertFile, o.Serving.TLSPrivateKeyFile, o.Serving.ClientCAFile = f.ServingCert, f.ServingKey, f.CA
	o.Serving.ShutdownGracePeriod = 2 * time.Second // keeps cleanup quick when a client is still attached
	o.Cluster.Kubeconfig = f.GatewayKubeconfig
	o.Kubelet.ClientCertificate, o.Kubelet.ClientKey, o.Kubelet.CertificateAuthority = f.KubeletClientCert, f.KubeletClientKey, f.CA
	o.Metrics.BindAddress = "127.0.0.1:0"
	for _, fn := range tweak {
		fn(o)
	}
	e.opts = o
	c, err := app.Complete(o)
	if err != nil {
		t.Fatalf("app.Complete: %v", err)
	}
	if e.gw, err = app.New(c); err != nil {
		t.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.runErr = cancel, make(chan error, 1)
	go func() { e.runErr <- e.gw.Run(ctx) }()
	t.Cleanup(func() {
		if err := e.shutdown(o.Serving.ShutdownGracePeriod + 10*time.Second); err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	})

	e.user, err = cl.CA.Issue(pki.IssueOptions{CommonName: "alice", Organization: []string{"devs"}, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = &rest.Config{
		Host: "https://" + e.gw.Addr(),
		TLSClientConfig: rest.TLSClientConfig{
			CertData: e.user.CertPEM, KeyData: e.user.KeyPEM, CAData: cl.CA.CertPEM,
		},
	}
	e.kubeconfig = filepath.Join(dir, "alice.kubeconfig")
	if err := devcluster.WriteKubeconfig(e.kubeconfig, e.cfg.Host, cl.CA.CertPEM, e.user); err != nil {
		t.Fatal(err)
	}
	e.waitReady()
	return e
}

// shutdown cancels the gateway's context and waits for Run, at most d.
// Later calls return nil at once.
func (e *env) shutdown(d time.Duration) error {
	var err error
	e.stop.Do(func() {
		e.cancel()
		select {
		case err = <-e.runErr:
		case <-time.After(d):
			err = fmt.Errorf("Run did not return within %v of the context's end", d)
		}
	})
	return err
}

// waitReady polls /readyz until the node informer has synced.
func (e *env) waitReady() {
	e.t.Helper()
	eventually(e.t, 20*time.Second, "gateway /readyz to answer 200", func() bool {
		code, _ := e.admin("/readyz")
		return code == http.StatusOK
	})
}

// admin GETs a path on the admin listener.
func (e *env) admin(path string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + e.gw.AdminAddr() + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) addPod(p devcluster.Pod) {
	e.t.Helper()
	if err := e.cluster.AddPod(p); err != nil {
		e.t.Fatalf("AddPod %s: %v", p.Name, err)
	}
}

// pfURL is the portforward URL of a pod in namespace default through the
// gateway; prefix is "" or "/clusters/{name}".
func (e *env) pfURL(prefix, pod string) *url.URL {
	return &url.URL{Scheme: "https", Host: e.gw.Addr(), Path: prefix + "/api/v1/namespaces/default/pods/" + pod + "/portforward"}
}

// tlsConfig is alice's TLS client config for raw requests; withCert false
// sends no client certificate.
func (e *env) tlsConfig(withCert bool) *tls.Config {
	kp := e.user
	if !withCert {
		kp = nil
	}
	c := devcluster.ClientTLS(e.cluster.CA, kp)
	c.NextProtos = []string{"http/1.1"}
	return c
}

// dialerKind builds one of client-go's port-forward dialers.
type dialerKind string

const (
	dialSPDY     dialerKind = "spdy"
	dialTunnel   dialerKind = "websocket-tunnel"
	dialFallback dialerKind = "fallback"
)

// dialer returns a client-go dialer of kind for u with cfg, built the way
// kubectl builds it (k8s.io/kubectl/pkg/cmd/portforward).
func dialer(t testing.TB, kind dialerKind, cfg *rest.Config, u *url.URL) httpstream.Dialer {
	t.Helper()
	newSPDY := func() httpstream.Dialer {
		rt, up, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u)
	}
	newTunnel := func() httpstream.Dialer {
		d, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	switch kind {
	case dialSPDY:
		return newSPDY()
	case dialTunnel:
		return newTunnel()
	case dialFallback:
		return portforward.NewFallbackDialer(newTunnel(), newSPDY(), shouldFallback)
	}
	t.Fatalf("unknown dialer %q", kind)
	return nil
}

// shouldFallback is kubectl's test for falling back from the WebSocket tunnel
// to SPDY. client-go v0.37's WebSocket round tripper returns
// k8s.io/streaming's UpgradeFailureError, a type distinct from apimachinery's,
// so apimachinery's IsUpgradeFailure alone never matches it; kubectl built
// against v0.37 must check the streaming type, and so do we.
func shouldFallback(err error) bool {
	return httpstream.IsUpgradeFailure(err) || streamhttp.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
}

// forward is a running client-go PortForwarder.
type forward struct {
	local  string     // 127.0.0.1:N for the first remote port
	locals []string   // one per remote port, in order
	done   chan error // ForwardPorts' result
	stop   func()
}

func (f *forward) dial() (net.Conn, error) { return net.Dial("tcp", f.local) }

// startForward runs portforward.NewOnAddresses on 127.0.0.1:0 → each remote
// port and waits on its ready channel. It is stopped at the end of the test.
func startForward(t testing.TB, d httpstream.Dialer, remotes ...int) *forward {
	t.Helper()
	f, err := tryForward(d, remotes...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.stop)
	return f
}

// tryForward is startForward returning the error ForwardPorts ended with
// when it ends before being ready; the caller must call stop.
func tryForward(d httpstream.Dialer, remotes ...int) (*forward, error) {
	stopCh, ready := make(chan struct{}), make(chan struct{})
	specs := make([]string, len(remotes))
	for i, r := range remotes {
		specs[i] = "0:" + strconv.Itoa(r)
	}
	pf, err := portforward.NewOnAddresses(d, []string{"127.0.0.1"}, specs, stopCh, ready, io.Discard, io.Discard)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	f := &forward{done: make(chan error, 1), stop: func() { once.Do(func() { close(stopCh) }) }}
	go func() { f.done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-f.done:
		f.stop()
		return nil, fmt.Errorf("ForwardPorts: %w", err)
	case <-time.After(30 * time.Second):
		f.stop()
		return nil, fmt.Errorf("port forward not ready after 30s")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		f.stop()
		return nil, err
	}
	for _, p := range ports {
		f.locals = append(f.locals, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Local))))
	}
	f.local = f.locals[0]
	return f, nil
}

// eventually polls cond every 20ms until it holds or d passes. It is for
// conditions with no channel to wait on (a metric, /readyz, goroutines).
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
