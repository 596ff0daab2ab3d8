package clusters

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pfgateway/pfgateway/apiproxy"
	"github.com/pfgateway/pfgateway/portforward"
	"github.com/pfgateway/pfgateway/resolve"
	"github.com/pfgateway/pfgateway/upgrade"
)

// Settings are what every cluster's runtime shares: the gateway's flags.
type Settings struct {
	// QPS and Burst limit each cluster's API client (--kube-api-qps/-burst).
	QPS   float32
	Burst int
	// AddressTypes and DefaultKubeletPort configure kubelet resolvers.
	AddressTypes       []corev1.NodeAddressType
	DefaultKubeletPort int32
	// NewAuthorizer builds a cluster's port-forward authorizer from its
	// client (a SubjectAccessReview webhook, or AlwaysAllow).
	NewAuthorizer func(kubernetes.Interface) (authorizer.Authorizer, error)
	// Upstream holds the dial and upgrade timeouts of apiserver backends;
	// TLS and credentials come from each cluster's kubeconfig.
	Upstream upgrade.BackendOptions
	// Kubelet is the gateway's kubelet backend configuration (--kubelet-*),
	// the base of a kubelet cluster with kubelet certificates of its own.
	Kubelet upgrade.BackendOptions
	// RESTConfig builds a cluster's client config; nil reads its kubeconfig
	// or the in-cluster service account (tests replace it).
	RESTConfig func(Cluster) (*rest.Config, error)
}

// Runtime is what the gateway holds for one served cluster.
type Runtime struct {
	Cluster    Cluster
	REST       *rest.Config
	Client     kubernetes.Interface
	Resolver   portforward.Resolver
	Authorizer authorizer.Authorizer
	ReadOnly   http.Handler
	// Backend dials the cluster's API server (backend apiserver) or its
	// kubelets with the cluster's own kubelet certificates; nil uses the
	// gateway's kubelet backend.
	Backend *upgrade.Backend

	informers informers.SharedInformerFactory // backend kubelet only
	stopCh    chan struct{}
	stopOnce  sync.Once
}

// newRuntime builds cl's runtime; nothing runs until start.
func newRuntime(cl Cluster, s *Settings) (*Runtime, error) {
	build := s.RESTConfig
	if build == nil {
		build = RESTConfig
	}
	cfg, err := build(cl)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", cl.Name, err)
	}
	cfg.QPS, cfg.Burst = s.QPS, s.Burst
	cfg.UserAgent = "pfgateway"
	r := &Runtime{Cluster: cl, REST: cfg, stopCh: make(chan struct{})}
	if r.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("cluster %q: client: %w", cl.Name, err)
	}
	if r.Authorizer, err = s.NewAuthorizer(r.Client); err != nil {
		return nil, fmt.Errorf("cluster %q: authorizer: %w", cl.Name, err)
	}
	if r.ReadOnly, err = apiproxy.New(map[string]*rest.Config{cl.Name: cfg}); err != nil {
		return nil, err
	}
	switch cl.Backend {
	case BackendAPIServer:
		if r.Backend, err = newUpstream(cfg, s.Upstream); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", cl.Name, err)
		}
		if r.Resolver, err = newUpstreamResolver(r.Client, cfg); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", cl.Name, err)
		}
	default:
		if cl.ownKubeletTLS() {
			if r.Backend, err = kubeletBackend(cl, s.Kubelet); err != nil {
				return nil, fmt.Errorf("cluster %q: %w", cl.Name, err)
			}
		}
		if err := kubeletIdentity(cl, s.Kubelet); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", cl.Name, err)
		}
		r.informers = informers.NewSharedInformerFactory(r.Client, 0)
		r.Resolver = &resolve.Resolver{
			Client: r.Client, Nodes: r.informers.Core().V1().Nodes().Lister(),
			AddressTypes: s.AddressTypes, DefaultPort: s.DefaultKubeletPort, RequireRunning: true,
		}
	}
	return r, nil
}

// kubeletIdentity checks that a kubelet cluster has a client certificate
// and a way to verify kubelets, its own or the gateway's --kubelet-* flags
// (optional with --clusters-config, for gateways with only API-server
// backends).
func kubeletIdentity(cl Cluster, base upgrade.BackendOptions) error {
	hasCert := cl.KubeletClientCertificate != "" || (base.TLS != nil && (len(base.TLS.Certificates) > 0 || base.TLS.GetClientCertificate != nil))
	hasCA := cl.KubeletCertificateAuthority != "" || (base.TLS != nil && (base.TLS.RootCAs != nil || base.TLS.InsecureSkipVerify))
	switch {
	case !hasCert:
		return errors.New("backend kubelet needs a kubelet client certificate: kubeletClientCertificate/kubeletClientKey or --kubelet-client-certificate/--kubelet-client-key")
	case !hasCA:
		return errors.New("backend kubelet needs the kubelet CA: kubeletCertificateAuthority or --kubelet-certificate-authority")
	}
	return nil
}

// kubeletBackend is base with cl's kubelet certificate and CA in place of
// the gateway's.
func kubeletBackend(cl Cluster, base upgrade.BackendOptions) (*upgrade.Backend, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if base.TLS != nil {
		tc = base.TLS.Clone()
	}
	if cl.KubeletClientCertificate != "" {
		kp, err := tls.LoadX509KeyPair(cl.KubeletClientCertificate, cl.KubeletClientKey)
		if err != nil {
			return nil, fmt.Errorf("kubeletClientCertificate/kubeletClientKey: %w", err)
		}
		tc.Certificates, tc.GetClientCertificate = []tls.Certificate{kp}, nil
	}
	if cl.KubeletCertificateAuthority != "" {
		pem, err := os.ReadFile(cl.KubeletCertificateAuthority)
		if err != nil {
			return nil, fmt.Errorf("kubeletCertificateAuthority: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubeletCertificateAuthority: no certificates found in %s", cl.KubeletCertificateAuthority)
		}
		tc.InsecureSkipVerify = false
	}
	base.TLS = tc
	return upgrade.NewBackend(base), nil
}

// RESTConfig reads cl's kubeconfig (and context) or the in-cluster
// service account.
func RESTConfig(cl Cluster) (*rest.Config, error) {
	if cl.InCluster {
		return rest.InClusterConfig()
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: cl.Kubeconfig}
	over := &clientcmd.ConfigOverrides{CurrentContext: cl.Context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, over).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", cl.Kubeconfig, err)
	}
	return cfg, nil
}

// start runs the node informer (backend kubelet) until stop.
func (r *Runtime) start() {
	if r.informers != nil {
		r.informers.Start(r.stopCh)
	}
}

// waitForCacheSync waits for the node informer; false if ctx ends first.
func (r *Runtime) waitForCacheSync(ctx context.Context) bool {
	if r.informers == nil {
		return true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-r.stopCh:
			cancel()
		}
	}()
	for _, ok := range r.informers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return false
		}
	}
	return true
}

// stop ends the runtime's informers; sessions it resolved go on.
func (r *Runtime) stop() {
	r.stopOnce.Do(func() {
		close(r.stopCh)
		if r.informers != nil {
			r.informers.Shutdown()
		}
	})
}

// NodeInformer is the cluster's node informer (backend kubelet), for those
// who react to node deletions; nil for backend apiserver.
func (r *Runtime) NodeInformer() cache.SharedIndexInformer {
	if r.informers == nil {
		return nil
	}
	return r.informers.Core().V1().Nodes().Informer()
}
