// Package apiproxy serves the read-only API calls kubectl makes before a
// port-forward (version, discovery, the pod or workload, pods by selector)
// by relaying them to the cluster's API server. The router decides which
// calls get here; this package only relays, with the gateway's credentials
// and none of the caller's, impersonating the caller.
package apiproxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/authz"
	"github.com/pfgateway/pfgateway/router"
	"github.com/pfgateway/pfgateway/status"
)

// forwardedHeaders are the only request headers relayed: content
// negotiation (protobuf, aggregated discovery), caching, and kubectl's
// command headers for the API server's audit. Credentials never are.
var forwardedHeaders = []string{
	"Accept", "Accept-Encoding", "User-Agent", "If-None-Match", "If-Modified-Since",
	"Cache-Control", "Kubectl-Command", "Kubectl-Session", "X-Forwarded-For",
}

// Proxy relays to the API servers of the clusters it knows.
type Proxy struct {
	proxies map[string]*httputil.ReverseProxy
}

// New builds a relay for each cluster's rest config.
func New(clusters map[string]*rest.Config) (*Proxy, error) {
	p := &Proxy{proxies: map[string]*httputil.ReverseProxy{}}
	for name, cfg := range clusters {
		rp, err := newReverseProxy(name, cfg)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", name, err)
		}
		p.proxies[name] = rp
	}
	return p, nil
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	cluster := router.ClusterFrom(req.Context())
	rp, ok := p.proxies[cluster]
	if !ok {
		status.NotFound(w, req)
		return
	}
	// Without a user the relay would go out as the gateway itself.
	if u, ok := request.UserFrom(req.Context()); !ok || u.GetName() == "" {
		status.Write(w, req, apierrors.NewInternalError(errors.New("no authenticated user to impersonate")))
		return
	}
	rp.ServeHTTP(w, req)
}

func newReverseProxy(cluster string, cfg *rest.Config) (*httputil.ReverseProxy, error) {
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	if target.Scheme == "" {
		target.Scheme = "https"
	}
	return &httputil.ReverseProxy{
		// As the caller: the API server authorizes (and audits) each read.
		Transport: authz.ImpersonatingTransport(rt),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = ""
			h := http.Header{}
			for _, k := range forwardedHeaders {
				for _, v := range pr.In.Header.Values(k) {
					h.Add(k, v)
				}
			}
			pr.Out.Header = h
			pr.SetXForwarded()
		},
		// Watches stream; flush each event as it comes.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			klog.V(2).InfoS("API server relay failed", "cluster", cluster, "path", req.URL.Path, "err", err)
			status.Write(w, req, apierrors.NewServiceUnavailable(fmt.Sprintf("unable to reach the API server of cluster %q", cluster)))
		},
	}, nil
}
