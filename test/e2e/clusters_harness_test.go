package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app"
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// clustersEnv is a gateway started with --clusters-config in front of
// several dev clusters, each with its own in-memory API server (and so its
// own SubjectAccessReviews) and its own test kubelet.
type clustersEnv struct {
	*env // its cluster is "a"
	dir  string
	file string // the clusters file
	// clusters by name, "a" included.
	clusters map[string]*devcluster.Cluster
	// alice's certificate files, for kubeconfigs.
	aliceCert, aliceKey string
}

// startDevCluster starts a dev cluster signed by ca (nil: a new CA) with
// pod default/hash-{name} (and any extra pods) on the shared hash server.
func (ce *clustersEnv) startDevCluster(t *testing.T, name string, ca *pki.CA, pods ...string) *devcluster.Cluster {
	t.Helper()
	dir := filepath.Join(ce.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cl, err := devcluster.Start(devcluster.Options{Dir: dir, GitVersion: "v1.33.0", ForwardLinger: e2eLinger, CA: ca})
	if err != nil {
		t.Fatalf("devcluster %s: %v", name, err)
	}
	ce.env.t.Cleanup(cl.Close) // the whole test's: it may be started in a subtest
	for _, p := range append([]string{"hash-" + name}, pods...) {
		if err := cl.AddPod(devcluster.Pod{Name: p, Ports: map[int32]string{hashPort: ce.hash.Addr()}}); err != nil {
			t.Fatal(err)
		}
	}
	ce.clusters[name] = cl
	return cl
}

// writeClusters writes the clusters file naming each cluster (in order)
// with its backend; every dev cluster is a kubelet cluster. A cluster with
// a CA of its own gets its own kubelet certificate and CA.
func (ce *clustersEnv) writeClusters(t *testing.T, names ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("clusters:\n")
	for _, n := range names {
		cl := ce.clusters[n]
		fmt.Fprintf(&b, "- name: %s\n  kubeconfig: %s\n  backend: kubelet\n", n, cl.Files.GatewayKubeconfig)
		if cl.CA != ce.cluster.CA {
			fmt.Fprintf(&b, "  kubeletClientCertificate: %s\n  kubeletClientKey: %s\n  kubeletCertificateAuthority: %s\n",
				cl.Files.KubeletClientCert, cl.Files.KubeletClientKey, cl.Files.CA)
		}
	}
	tmp := ce.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// A rename, as a ConfigMap update swaps the file.
	if err := os.Rename(tmp, ce.file); err != nil {
		t.Fatal(err)
	}
}

// newClustersEnv starts dev clusters a and b (pods hash-a, hash-b, and
// "shared" in both; b with a CA of its own, so its kubelet needs the
// cluster's own kubelet certificate) and a gateway serving them from a
// clusters file.
func newClustersEnv(t *testing.T) *clustersEnv {
	t.Helper()
	ce := &clustersEnv{dir: t.TempDir(), clusters: map[string]*devcluster.Cluster{}}
	ce.file = filepath.Join(ce.dir, "clusters.yaml")
	ce.env = &env{t: t, hash: startHashPod(t)} // before startDevCluster, which uses env.t
	a := ce.startDevCluster(t, "a", nil, "shared")
	ce.cluster = a
	ce.startDevCluster(t, "b", nil, "shared")
	ce.writeClusters(t, "a", "b")

	o := options.NewOptions()
	o.Serving.BindAddress = net.ParseIP("127.0.0.1")
	o.Serving.SecurePort = 0
	f := a.Files
	o.Serving.TLSCertFile, o.Serving.TLSPrivateKeyFile, o.Serving.ClientCAFile = f.ServingCert, f.ServingKey, f.CA
	o.Serving.ShutdownGracePeriod = 2 * time.Second
	o.Clusters.ConfigFile = ce.file
	o.Authn.TokenWebhook = true // checked in the authentication cluster, a
	o.Kubelet.ClientCertificate, o.Kubelet.ClientKey, o.Kubelet.CertificateAuthority = f.KubeletClientCert, f.KubeletClientKey, f.CA
	o.Metrics.BindAddress = "127.0.0.1:0"
	ce.opts = o
	c, err := app.Complete(o)
	if err != nil {
		t.Fatalf("app.Complete: %v", err)
	}
	if ce.gw, err = app.New(c); err != nil {
		t.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ce.cancel, ce.runErr = cancel, make(chan error, 1)
	go func() { ce.runErr <- ce.gw.Run(ctx) }()
	t.Cleanup(func() {
		if err := ce.shutdown(o.Serving.ShutdownGracePeriod + 10*time.Second); err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	})
	if ce.user, err = a.CA.Issue(pki.IssueOptions{CommonName: "alice", Organization: []string{"devs"}, Usage: pki.Client}); err != nil {
		t.Fatal(err)
	}
	if ce.aliceCert, ce.aliceKey, err = ce.user.WriteFiles(ce.dir, "alice"); err != nil {
		t.Fatal(err)
	}
	ce.cfg = &rest.Config{
		Host:            "https://" + ce.gw.Addr(),
		TLSClientConfig: rest.TLSClientConfig{CertData: ce.user.CertPEM, KeyData: ce.user.KeyPEM, CAData: a.CA.CertPEM},
	}
	ce.waitReady()
	return ce
}

// clusterConfig is alice's client config for /clusters/{name}.
func (ce *clustersEnv) clusterConfig(name string) *rest.Config {
	c := rest.CopyConfig(ce.cfg)
	c.Host += "/clusters/" + name
	return c
}

// kubeconfigFor writes alice's kubeconfig for cluster name with the
// `pfgateway kubeconfig` subcommand and returns its path.
func (ce *clustersEnv) kubeconfigFor(t *testing.T, name string) string {
	t.Helper()
	cmd := app.NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"kubeconfig", "--cluster=" + name, "--server=https://" + ce.gw.Addr(), "--namespace=default",
		"--certificate-authority=" + ce.cluster.Files.CA, "--client-certificate=" + ce.aliceCert, "--client-key=" + ce.aliceKey})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("pfgateway kubeconfig: %v", err)
	}
	p := filepath.Join(ce.dir, name+".kubeconfig")
	if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
