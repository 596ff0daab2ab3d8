package app

import (
	"sync"

	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/clusters"
	"github.com/pfgateway/pfgateway/podwatch"
	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/session"
)

// clusterPods is the pod watch under --clusters-config: one
// podwatch.Watcher per cluster, made from that cluster's client when its
// first session starts, so a session ends when its pod or node is deleted
// in the cluster it forwards to. A removed cluster's watcher stays for the
// sessions that outlive the removal.
type clusterPods struct {
	m  *clusters.Manager
	mu sync.Mutex
	w  map[string]*podwatch.Watcher
}

var _ session.Observer = (*clusterPods)(nil)

func newClusterPods(m *clusters.Manager) *clusterPods {
	return &clusterPods{m: m, w: map[string]*podwatch.Watcher{}}
}

func (c *clusterPods) watcher(cluster string) *podwatch.Watcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.w[cluster]; ok {
		return w
	}
	r, ok := c.m.Runtime(cluster)
	if !ok {
		return nil
	}
	w := podwatch.New(r.Client, cluster, podwatch.Options{})
	if inf := r.NodeInformer(); inf != nil {
		if err := w.WatchNodes(inf); err != nil {
			klog.ErrorS(err, "Cannot watch node deletions", "cluster", cluster)
		}
	}
	c.w[cluster] = w
	return w
}

func (c *clusterPods) SessionStarted(s *session.Session) {
	if w := c.watcher(s.Cluster); w != nil {
		w.SessionStarted(s)
	}
}

func (c *clusterPods) SessionEnded(s *session.Session, e session.Ended) {
	c.mu.Lock()
	w := c.w[s.Cluster]
	c.mu.Unlock()
	if w != nil {
		w.SessionEnded(s, e)
	}
}

func (c *clusterPods) Forwarded(*session.Session, relay.Record) {}

// Stop ends every cluster's pod watches.
func (c *clusterPods) Stop() {
	c.mu.Lock()
	ws := make([]*podwatch.Watcher, 0, len(c.w))
	for _, w := range c.w {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	for _, w := range ws {
		w.Stop()
	}
}
