package streams

import (
	"context"
	"crypto/tls"
	"flag"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app"
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// path is one way from the client to the kubelet.
type path struct {
	name    string
	gateway bool
	mode    string // options.Streams.SpliceMode
	early   bool   // options.Streams.EarlyReply
}

var (
	pathDirect  = path{name: "direct"}
	pathOpaque  = path{name: "opaque", gateway: true, mode: options.SpliceOpaque}
	pathStreams = path{name: "streams", gateway: true, mode: options.SpliceStreams}
	pathEarly   = path{name: "streams-early", gateway: true, mode: options.SpliceStreams, early: true}
	allPaths    = []path{pathDirect, pathOpaque, pathStreams, pathEarly}
)

var pathsFlag = flag.String("streams.paths", "direct,opaque,streams,streams-early",
	"comma-separated paths to run; each is checked against the cases' goldens, and against direct when it runs")

// selectedPaths is allPaths filtered by -streams.paths.
func selectedPaths() []path {
	want := map[string]bool{}
	for _, n := range strings.Split(*pathsFlag, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var out []path
	for _, p := range allPaths {
		if want[p.name] {
			out = append(out, p)
		}
	}
	return out
}

// clusterOpts is what a case may change on the kubelet and the gateway.
// streamsLinger is the test kubelet's linger in this tier.
const streamsLinger = 10 * time.Second

type clusterOpts struct {
	creationTimeout time.Duration // kubelet streamCreationTimeout, 0 = 30s
	idleTimeout     time.Duration // kubelet streamIdleTimeout, 0 = 4h
	gateway         func(*options.Options)
}

// env is one dev cluster and, on gateway paths, a gateway in front of it.
// Each (case, path) gets its own, so kubelet timeouts and kills stay local.
type env struct {
	t       *testing.T
	path    path
	cluster *devcluster.Cluster
	gw      *app.Gateway
	user    *pki.KeyPair // alice, the gateway's user
	kc      tls.Certificate
	names   *namer   // pod addresses by name, for logs and transcripts
	kind    dialKind // the client-go dialer of TestClientGo's cases
}

func newEnv(t *testing.T, p path, o clusterOpts) *env {
	t.Helper()
	dir := t.TempDir()
	// The kubelet's 1 s linger (how long a forward waits for the pod's
	// answer after the client's FIN) is too short on a loaded CI machine:
	// the direct path then loses the pod's answer that the golden expects.
	// No case observes the linger itself.
	cl, err := devcluster.Start(devcluster.Options{Dir: dir, GitVersion: "v1.33.0",
		StreamCreationTimeout: o.creationTimeout, StreamIdleTimeout: o.idleTimeout, ForwardLinger: streamsLinger})
	if err != nil {
		t.Fatalf("devcluster.Start: %v", err)
	}
	t.Cleanup(cl.Close)
	e := &env{t: t, path: p, cluster: cl, names: &namer{}}
	if e.kc, err = tls.LoadX509KeyPair(cl.Files.KubeletClientCert, cl.Files.KubeletClientKey); err != nil {
		t.Fatal(err)
	}
	if e.user, err = cl.CA.Issue(pki.IssueOptions{CommonName: "alice", Organization: []string{"devs"}, Usage: pki.Client}); err != nil {
		t.Fatal(err)
	}
	if p.gateway {
		e.startGateway(o.gateway)
	}
	return e
}

// startGateway builds the gateway as test/e2e does (options.NewOptions,
// app.Complete, app.New, Run) in the path's splice mode.
func (e *env) startGateway(tweak func(*options.Options)) {
	t := e.t
	o := options.NewOptions()
	o.Serving.BindAddress = net.ParseIP("127.0.0.1")
	o.Serving.SecurePort = 0
	f := e.cluster.Files
	o.Serving.TLSCertFile, o.Serving.TLSPrivateKeyFile, o.Serving.ClientCAFile = f.ServingCert, f.ServingKey, f.CA
	o.Serving.ShutdownGracePeriod = time.Second
	o.Cluster.Kubeconfig = f.GatewayKubeconfig
	o.Kubelet.ClientCertificate, o.Kubelet.ClientKey, o.Kubelet.CertificateAuthority = f.KubeletClientCert, f.KubeletClientKey, f.CA
	o.Metrics.BindAddress = "127.0.0.1:0"
	o.Streams.SpliceMode, o.Streams.EarlyReply = e.path.mode, e.path.early
	// The direct path cannot outlive its kubelet connection; the
	// transcripts compare like with like (test/e2e/faults_test.go covers it).
	o.Reconnect.Enabled = false
	if tweak != nil {
		tweak(o)
	}
	c, err := app.Complete(o)
	if err != nil {
		t.Fatalf("app.Complete: %v", err)
	}
	if e.gw, err = app.New(c); err != nil {
		t.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- e.gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("gateway Run did not return 15s after its context ended")
		}
	})
	admin := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	eventually(t, 20*time.Second, "gateway /readyz", func() bool {
		resp, err := admin.Get("http://" + e.gw.AdminAddr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// addPod adds pod default/name whose container ports map to addrs.
func (e *env) addPod(name string, ports map[int32]string) {
	e.t.Helper()
	if err := e.cluster.AddPod(devcluster.Pod{Name: name, Ports: ports}); err != nil {
		e.t.Fatalf("AddPod: %v", err)
	}
}

// target is where a client of this path connects for pod default/name, with
// the TLS config it needs: the kubelet's URL and the gateway's kubelet
// client certificate directly, the portforward subresource and alice's
// certificate through the gateway.
func (e *env) target(pod string) (*url.URL, *tls.Config) {
	cfg := devcluster.ClientTLS(e.cluster.CA, nil)
	cfg.NextProtos = []string{"http/1.1"}
	if !e.path.gateway {
		cfg.Certificates = []tls.Certificate{e.kc}
		return &url.URL{Scheme: "https", Host: e.cluster.Kubelet.Addr(), Path: "/portForward/default/" + pod}, cfg
	}
	cfg.Certificates = []tls.Certificate{e.user.TLS}
	return &url.URL{Scheme: "https", Host: e.gw.Addr(), Path: "/api/v1/namespaces/default/pods/" + pod + "/portforward"}, cfg
}

// podFullName and podUID are how the kubelet names pod default/name in its
// error messages (devcluster.AddPod's UID scheme).
func podFullName(name string) string { return name + "_default" }
func podUID(name string) string      { return "uid-default-" + name }

// restConfig is a client-go config that reaches host with the TLS identity
// of cfg (client-go then dials a tap in front of the real target).
func restConfig(host string, ca []byte, kp *pki.KeyPair) *rest.Config {
	return &rest.Config{Host: "https://" + host, TLSClientConfig: rest.TLSClientConfig{
		CAData: ca, CertData: kp.CertPEM, KeyData: kp.KeyPEM,
	}}
}

// eventually polls cond every 20ms until it holds or d passes.
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

// recv waits at most d for a value from c.
func recv[T any](t testing.TB, c <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
		var zero T
		return zero
	}
}
