// Package app wires pfgateway's packages into a running gateway.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/apiproxy"
	"github.com/pfgateway/pfgateway/audit"
	"github.com/pfgateway/pfgateway/authn"
	"github.com/pfgateway/pfgateway/clusters"
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/memreturn"
	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/netconn"
	"github.com/pfgateway/pfgateway/podwatch"
	"github.com/pfgateway/pfgateway/policy"
	"github.com/pfgateway/pfgateway/portforward"
	"github.com/pfgateway/pfgateway/router"
	"github.com/pfgateway/pfgateway/session"
	"github.com/pfgateway/pfgateway/upgrade"
)

// cacheSyncTimeout bounds the wait for the node informer at start.
const cacheSyncTimeout = 60 * time.Second

// requestDrainTimeout bounds the wait for ordinary requests at the end of
// the drain.
const requestDrainTimeout = 5 * time.Second

// certReloadPeriod is how often the serving certificate files are checked.
const certReloadPeriod = 30 * time.Second

// Gateway is a running pfgateway.
type Gateway struct {
	cfg      *completedConfig
	Registry *prometheus.Registry
	Sessions *session.Registry

	listener, adminListener net.Listener
	server, admin           *http.Server
	ready, draining         atomic.Bool
	authn                   *authn.Authenticator
	informers               informers.SharedInformerFactory
	audit                   *audit.Auditor // nil without an audit sink
	policy                  *policy.Loader // nil without --policy-file
	memory                  *memreturn.Returner

	clusters *clusters.Manager // nil without --clusters-config
}

// New builds a gateway and binds its listeners; Run serves.
func New(c *completedConfig) (*Gateway, error) {
	g := &Gateway{cfg: c, Registry: prometheus.NewRegistry()}
	g.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(g.Registry)
	g.memory = memreturn.New(c.opts.Memory.Returner(), g.Registry)
	m.SetPortLabels(c.opts.Streams.MetricsPorts)
	g.Sessions = session.NewRegistry(m)
	g.Sessions.SetLimits(sessionLimits(c.opts.Limits))

	client, err := g.kubeClient(c)
	if err != nil {
		return nil, err
	}
	g.informers = informers.NewSharedInformerFactory(client, 0)
	res := c.resolver
	if g.clusters == nil { // else each cluster has its own (package clusters)
		res.Client, res.Nodes = client, g.informers.Core().V1().Nodes().Lister()
	}

	ro, err := apiproxy.New(map[string]*rest.Config{c.opts.Cluster.Name: c.clusterREST})
	if err != nil {
		return nil, err
	}
	if g.authn, err = newAuthenticator(c.opts, client); err != nil {
		return nil, err
	}
	az, err := newAuthorizer(c.opts.Authorization, client)
	if err != nil {
		return nil, err
	}
	if g.audit, err = newAuditor(c.opts.Audit, g.Registry); err != nil {
		return nil, err
	}
	if g.audit != nil {
		g.Sessions.SetObserver(g.audit)
	}
	// One pod watcher per cluster ends sessions whose pod or node is gone.
	if g.clusters != nil {
		g.Sessions.AddObserver(newClusterPods(g.clusters))
	} else {
		pods := podwatch.New(client, c.opts.Cluster.Name, podwatch.Options{})
		g.Sessions.AddObserver(pods)
		if err := pods.WatchNodes(g.informers.Core().V1().Nodes().Informer()); err != nil {
			return nil, err
		}
	}
	if g.policy, err = newPolicy(c.opts, g.Registry); err != nil {
		return nil, err
	}
	pf := &portforward.Handler{
		Resolvers: map[string]portforward.Resolver{c.opts.Cluster.Name: &res},
		Proxy: &upgrade.Proxy{Backend: upgrade.NewBackend(c.backend), Metrics: m, Streams: streamOptions(c.opts.Streams), Liveness: liveness(c.opts.Liveness),
			Reconnect: reconnect(c.opts.Reconnect)},
		Sessions: g.Sessions,
		Metrics:  m,
		Policy:   g.policy,
	}
	rc := router.Config{
		Clusters: []string{c.opts.Cluster.Name}, Authenticator: g.authn, PortForward: pf, ReadOnly: ro,
		Authorizer:   az,
		Audit:        g.audit,
		APIAudiences: c.opts.Authn.APIAudiences,
	}
	g.useClusters(pf, &rc)
	handler := router.New(rc)

	s := c.opts.Serving
	g.server = &http.Server{
		Handler:           handler,
		TLSConfig:         c.servingTLS,
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    s.MaxHeaderBytes,
		// No ReadTimeout/WriteTimeout: they would cut long port-forward streams.
		ErrorLog: klogWriterLogger(),
	}
	g.admin = &http.Server{Handler: g.adminHandler(), ReadHeaderTimeout: s.ReadHeaderTimeout, MaxHeaderBytes: s.MaxHeaderBytes}

	if g.listener, err = net.Listen("tcp", c.addr); err != nil {
		return nil, fmt.Errorf("--secure-port: %w", err)
	}
	// Under each client's TLS connection, so that netconn.Writer can
	// join a relayed frame's records into fewer system calls.
	g.listener = netconn.Listener{Listener: g.listener}
	if g.adminListener, err = net.Listen("tcp", c.opts.Metrics.BindAddress); err != nil {
		_ = g.listener.Close()
		return nil, fmt.Errorf("--metrics-bind-address: %w", err)
	}
	return g, nil
}

// Addr is the client-facing address actually bound.
func (g *Gateway) Addr() string { return g.listener.Addr().String() }

// AdminAddr is the metrics/health address actually bound.
func (g *Gateway) AdminAddr() string { return g.adminListener.Addr().String() }

func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case g.draining.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case !g.ready.Load():
			http.Error(w, "node cache not synced", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	})
	(&sessionsAPI{reg: g.Sessions, now: time.Now}).register(mux)
	return mux
}

// Run serves until ctx ends, then drains (shutdown).
func (g *Gateway) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.authn.Run(runCtx)
	g.audit.Start()
	go g.cfg.servingCert.Run(runCtx, certReloadPeriod)
	if g.policy != nil {
		go g.policy.Run(runCtx, policyCheckPeriod)
	}
	g.informers.Start(runCtx.Done())
	if g.clusters != nil {
		done := make(chan struct{})
		go func() { defer close(done); g.clusters.Run(runCtx, clustersCheckPeriod) }()
		defer func() { cancel(); <-done }() // its informers are stopped before Run returns
	}
	go g.Sessions.Sweep(runCtx) // idle until some session has a time limit
	go g.memory.Run(runCtx)

	errc := make(chan error, 2)
	go func() { errc <- g.admin.Serve(g.adminListener) }()
	go func() { errc <- g.server.ServeTLS(g.listener, "", "") }()
	go func() {
		syncCtx, done := context.WithTimeout(runCtx, cacheSyncTimeout)
		defer done()
		for typ, ok := range g.informers.WaitForCacheSync(syncCtx.Done()) {
			if !ok {
				klog.ErrorS(nil, "Informer cache did not sync; /readyz stays failing", "type", typ)
				return
			}
		}
		if g.clusters != nil && !g.clusters.WaitForCacheSync(syncCtx) {
			klog.ErrorS(nil, "A cluster's node informer did not sync; /readyz stays failing")
			return
		}
		g.ready.Store(true)
	}()
	klog.InfoS("pfgateway serving", "address", g.Addr(), "admin", g.AdminAddr(), "cluster", g.cfg.opts.Cluster.Name)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	g.shutdown()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// shutdown drains: /readyz fails at once; the listener stays open while
// live sessions run for the grace period, answering new port-forward
// requests with a 503 Status (so clients and load balancers go to another
// replica instead of meeting a refused connection) and still serving
// read-only calls; then the sessions left are closed with a message, and
// only then is the listener closed.
func (g *Gateway) shutdown() {
	g.draining.Store(true)
	// Answers from now on say Connection: close, and idle keep-alive
	// connections are closed, so clients reconnect (to another replica).
	g.server.SetKeepAlivesEnabled(false)
	grace, delay := g.cfg.opts.Serving.ShutdownGracePeriod, g.cfg.opts.Shutdown.Delay
	klog.InfoS("Shutting down", "liveSessions", g.Sessions.Len(), "gracePeriod", grace, "delay", delay)
	open := time.Now().Add(delay)
	if n := g.Sessions.Drain(grace); n > 0 {
		klog.InfoS("Closed sessions still open after the grace period", "sessions", n)
	}
	time.Sleep(time.Until(open)) // --shutdown-delay-duration
	// Shutdown closes the listener and waits for ordinary requests; it does
	// not wait for hijacked connections, which the registry drained.
	sctx, cancel := context.WithTimeout(context.Background(), requestDrainTimeout)
	_ = g.server.Shutdown(sctx)
	cancel()
	// Every session has ended and enqueued its events: flush them.
	actx, acancel := context.WithTimeout(context.Background(), auditFlushTimeout)
	g.audit.Close(actx)
	acancel()
	_ = g.server.Close()
	_ = g.admin.Close()
}

// streamOptions is nil for the opaque splice.
func streamOptions(o options.StreamOptions) *upgrade.StreamOptions {
	if o.SpliceMode != options.SpliceStreams {
		return nil
	}
	return &upgrade.StreamOptions{EarlyReply: o.EarlyReply, CreationTimeout: o.CreationTimeout, MaxStreams: o.MaxStreamsPerSession}
}

func liveness(o options.LivenessOptions) upgrade.Liveness {
	return upgrade.Liveness{
		KubeletPingInterval: o.KubeletPingInterval, KubeletPingTimeout: o.KubeletPingTimeout,
		WebSocketPingInterval: o.WebSocketPingInterval, WebSocketPingTimeout: o.WebSocketPingTimeout,
	}
}
