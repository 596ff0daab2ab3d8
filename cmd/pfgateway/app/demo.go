package app

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/apiserver"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// demoToken is the bearer token the demo API server's TokenReview accepts.
const demoToken = "pfgateway-demo-token"

type demoOptions struct {
	kubeconfigOut string
	bindAddress   string
	securePort    int
	metricsAddr   string
	version       string
}

func newDemoCommand() *cobra.Command {
	d := demoOptions{kubeconfigOut: "./pfgateway-demo.kubeconfig", bindAddress: "127.0.0.1", securePort: 8443, metricsAddr: "127.0.0.1:9095", version: "v1.33.0"}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the gateway in front of a self-contained demo cluster on loopback",
		Long: `demo starts, in one process, an in-memory API server, a kubelet built on the
CRI streaming server, a pod default/demo whose port 8080 serves HTTP, and
pfgateway in front of them. It writes a kubeconfig with a client certificate
and prints the kubectl and curl commands to try.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(d) },
	}
	fs := cmd.Flags()
	fs.StringVar(&d.kubeconfigOut, "kubeconfig-out", d.kubeconfigOut, "Where to write the kubeconfig for kubectl.")
	fs.StringVar(&d.bindAddress, "bind-address", d.bindAddress, "Address the gateway listens on.")
	fs.IntVar(&d.securePort, "secure-port", d.securePort, "Port the gateway listens on (0 picks a free port).")
	fs.StringVar(&d.metricsAddr, "metrics-bind-address", d.metricsAddr, "host:port for /metrics, /healthz and /readyz.")
	fs.StringVar(&d.version, "kubernetes-version", d.version, "Version the demo API server reports (kubectl's dispatcher picks its binary by it).")
	return cmd
}

func runDemo(d demoOptions) error {
	dir, err := os.MkdirTemp("", "pfgateway-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cl, err := devcluster.Start(devcluster.Options{Dir: dir, GitVersion: d.version})
	if err != nil {
		return fmt.Errorf("starting the demo cluster: %w", err)
	}
	defer cl.Close()
	stopApp, err := cl.AddDemoApp()
	if err != nil {
		return err
	}
	defer stopApp()

	o := options.NewOptions()
	o.Serving.BindAddress = net.ParseIP(d.bindAddress)
	if o.Serving.BindAddress == nil {
		return fmt.Errorf("--bind-address %q is not an IP address", d.bindAddress)
	}
	o.Serving.SecurePort = d.securePort
	f := cl.Files
	o.Serving.TLSCertFile, o.Serving.TLSPrivateKeyFile, o.Serving.ClientCAFile = f.ServingCert, f.ServingKey, f.CA
	o.Cluster.Kubeconfig = f.GatewayKubeconfig
	o.Kubelet.ClientCertificate, o.Kubelet.ClientKey, o.Kubelet.CertificateAuthority = f.KubeletClientCert, f.KubeletClientKey, f.CA
	o.Metrics.BindAddress = d.metricsAddr
	// Bearer tokens too: the demo API server answers TokenReviews for one.
	o.Authn.TokenWebhook = true
	cl.APIServer.SetTokens(map[string]apiserver.TokenUser{demoToken: {Username: "demo-token-user", Groups: []string{"demo-group"}}})
	c, err := Complete(o)
	if err != nil {
		return err
	}
	g, err := New(c)
	if err != nil {
		return err
	}

	user, err := cl.CA.Issue(pki.IssueOptions{CommonName: "demo-user", Organization: []string{"demo-group"}, Usage: pki.Client})
	if err != nil {
		return err
	}
	if err := devcluster.WriteKubeconfig(d.kubeconfigOut, "https://"+g.Addr(), cl.CA.CertPEM, user); err != nil {
		return err
	}
	kc, _ := filepath.Abs(d.kubeconfigOut)
	fmt.Printf(`pfgateway demo is running at https://%s (metrics at http://%s/metrics).

In another terminal, try:

  kubectl --kubeconfig %s port-forward pod/demo 18080:8080
  curl http://127.0.0.1:18080/

svc/demo (port 80) and deploy/demo work too. Bearer tokens are checked by
TokenReview; the demo API server knows one:

  curl --cacert %s -H 'Authorization: Bearer %s' https://%s/api/v1/namespaces/default/pods/demo

Press Ctrl-C to stop.
`, g.Addr(), g.AdminAddr(), kc, f.CA, demoToken, g.Addr())
	return g.Run(SignalContext())
}
