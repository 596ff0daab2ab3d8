package clusters

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/authz"
	"github.com/pfgateway/pfgateway/resolve"
	"github.com/pfgateway/pfgateway/upgrade"
)

// newUpstream returns the backend of an apiserver cluster: it dials the
// cluster's API server with the TLS settings of cfg (CA, client
// certificate) and sends each portforward request with cfg's credentials
// (bearer token, token file, exec plugin: client-go's own round trippers
// write them) and the caller's Impersonate-* headers, so the upstream's
// RBAC and audit see the caller. Nothing of the caller's request but the
// headers upgrade.backendRequest allow-lists goes upstream. Redirects
// are never followed: an API server has no reason to send one.
func newUpstream(cfg *rest.Config, o upgrade.BackendOptions) (*upgrade.Backend, error) {
	cfg = rest.CopyConfig(cfg)
	// The gateway decides whom it impersonates: never a kubeconfig's "as".
	cfg.Impersonate = rest.ImpersonationConfig{}
	tc, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream TLS: %w", err)
	}
	if tc == nil { // an http:// server
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if o.WrapRequest, err = upstreamHeaders(cfg); err != nil {
		return nil, err
	}
	o.TLS, o.FollowRedirects, o.MaxRedirects = tc, false, 0
	return upgrade.NewBackend(o), nil
}

// upstreamHeaders returns the rewrite of an upstream portforward request:
// cfg's credentials and the caller's (request.UserFrom) impersonation.
func upstreamHeaders(cfg *rest.Config) (func(*http.Request) (*http.Request, error), error) {
	// The chain ends in MirrorRequest, which returns the request as the
	// wrappers left it instead of sending it (the API server's own
	// UpgradeRequestRoundTripper does the same for its upgrade requests).
	creds, err := rest.HTTPWrappersForConfig(cfg, proxy.MirrorRequest)
	if err != nil {
		return nil, fmt.Errorf("upstream credentials: %w", err)
	}
	headers := authz.ImpersonatingTransport(creds)
	return func(req *http.Request) (*http.Request, error) {
		if q := req.URL.Query(); q.Has("port") {
			// backendRequest names the legacy protocol's ports the
			// kubelet's way (port=); the API server reads ports=.
			req = req.Clone(req.Context())
			q["ports"] = q["port"]
			delete(q, "port")
			req.URL.RawQuery = q.Encode()
		}
		resp, err := headers.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		return resp.Request, nil
	}, nil
}

// upstreamResolver resolves a pod of an apiserver cluster: the pod is read
// (for the gateway policy's pod selectors and the API server's early
// refusals), but the node is the upstream's business.
type upstreamResolver struct {
	client kubernetes.Interface
	server *url.URL
}

func newUpstreamResolver(client kubernetes.Interface, cfg *rest.Config) (*upstreamResolver, error) {
	host, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream server: %w", err)
	}
	if host.Path == "" {
		host.Path = "/" // else JoinPath makes a relative path: POST api/v1/…
	}
	return &upstreamResolver{client: client, server: host}, nil
}

// Resolve returns {server}/api/v1/namespaces/{ns}/pods/{name}/portforward
// as the target, and the pod's node for logs, sessions and audit.
func (r *upstreamResolver) Resolve(ctx context.Context, namespace, name string) (*resolve.Target, error) {
	pod, err := r.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	// The same refusals, in the same words, as package resolve, so a
	// client cannot tell the backends apart by them.
	if pod.Spec.NodeName == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", name))
	}
	if pod.Status.Phase != corev1.PodRunning {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("unable to forward port because pod is not running. Current status=%v", pod.Status.Phase))
	}
	u := r.server.JoinPath("api", "v1", "namespaces", pod.Namespace, "pods", pod.Name, "portforward")
	u.RawQuery = ""
	return &resolve.Target{Node: pod.Spec.NodeName, Labels: pod.Labels, URL: u}, nil
}
