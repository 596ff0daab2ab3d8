package app

import (
	"fmt"
	"time"

	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/clusters"
	"github.com/pfgateway/pfgateway/portforward"
	"github.com/pfgateway/pfgateway/router"
	"github.com/pfgateway/pfgateway/upgrade"
)

// clustersCheckPeriod is how often the clusters file is re-read besides
// the file-system watch, in case an event is missed.
const clustersCheckPeriod = 30 * time.Second

// kubeClient is the client of the cluster the gateway authenticates
// against: --kubeconfig's, or with --clusters-config the authentication
// cluster's (whose runtime the manager builds here; c.clusterREST is set
// to its config).
func (g *Gateway) kubeClient(c *completedConfig) (kubernetes.Interface, error) {
	if c.opts.Clusters.ConfigFile == "" {
		client, err := kubernetes.NewForConfig(c.clusterREST)
		if err != nil {
			return nil, fmt.Errorf("cluster client: %w", err)
		}
		return client, nil
	}
	o := c.opts
	s := clusters.Settings{
		QPS: o.Cluster.QPS, Burst: o.Cluster.Burst,
		AddressTypes: c.resolver.AddressTypes, DefaultKubeletPort: c.resolver.DefaultPort,
		NewAuthorizer: func(client kubernetes.Interface) (authorizer.Authorizer, error) {
			return newAuthorizer(o.Authorization, client)
		},
		// An upstream API server is dialed with the kubelet timeouts.
		Upstream: upgrade.BackendOptions{DialTimeout: o.Kubelet.DialTimeout, KeepAlive: o.Kubelet.KeepAlive, UpgradeTimeout: o.Kubelet.UpgradeTimeout},
		Kubelet:  c.backend,
	}
	m, err := clusters.NewManager(o.Clusters.ConfigFile, s, g.Registry)
	if err != nil {
		return nil, fmt.Errorf("--clusters-config: %w", err)
	}
	g.clusters = m
	auth, _ := m.Runtime(m.Config().AuthenticationCluster)
	c.clusterREST = auth.REST
	klog.InfoS("Serving several clusters", "clusters", m.Names(), "authenticationCluster", auth.Cluster.Name)
	return auth.Client, nil
}

// useClusters makes the handler, the proxy and the router look clusters up
// in the manager (--clusters-config); without it they keep the single
// cluster they were built with.
func (g *Gateway) useClusters(pf *portforward.Handler, rc *router.Config) {
	if g.clusters == nil {
		return
	}
	m := g.clusters
	pf.ResolverFor = m.Resolver
	pf.Proxy.BackendFor = m.Backend
	rc.Clusters, rc.Known = m.Names(), m.Known
	rc.Authorizer, rc.ReadOnly = m, m
}
