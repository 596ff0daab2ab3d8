package clusters

import (
	"context"
	"time"

	"github.com/pfgateway/pfgateway/filewatch"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Reload results, the values of the reloads counter's result label.
const (
	ResultSuccess = filewatch.ResultSuccess
	ResultFailure = filewatch.ResultFailure
)

// debounce lets an editor or a ConfigMap update finish writing before the
// file is read: events closer together than this cause one read.
const debounce = 100 * time.Millisecond

// Registerer is where the manager's metrics go.
type Registerer = prometheus.Registerer

// Run starts the clusters' informers, then watches the file's directory (a
// ConfigMap update swaps a symlink there, which a watch on the file would
// miss) and re-reads it every period as well, until ctx ends; then every
// runtime is stopped.
func (m *Manager) Run(ctx context.Context, period time.Duration) {
	m.mu.Lock()
	m.running = true
	for _, r := range m.cur.Load().runtimes {
		r.start()
	}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.running = false
		for _, r := range m.cur.Load().runtimes {
			r.stop()
		}
	}()

	filewatch.Run(ctx, m.path, "clusters", period, debounce, m.Reload)
}

// Reload reads the file and installs it if it changed and is valid. A bad
// or missing file, or one whose clusters cannot be built, is logged and
// counted once per content (or error); the clusters in force stay.
func (m *Manager) Reload() {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.cur.Load()
	var st *state
	applied, err := m.metrics.file.Reload(cur.cfg.Hash, func(data []byte) error {
		cfg, err := m.parse(data)
		if err == nil {
			st, err = m.build(cfg, cur)
		}
		if err == nil {
			m.install(st)
		}
		return err
	})
	switch {
	case err != nil:
		klog.ErrorS(err, "Keeping the clusters in force", "path", m.path, "hash", cur.cfg.Hash, "clusters", cur.cfg.Names())
	case applied:
		klog.InfoS("Reloaded the clusters file", "path", m.path, "hash", st.cfg.Hash, "clusters", st.cfg.Names())
	}
}

// reloadMetrics are the clusters file's metrics.
type reloadMetrics struct {
	file *filewatch.File
	info *prometheus.GaugeVec
}

func newReloadMetrics(path string, reg Registerer) *reloadMetrics {
	m := &reloadMetrics{
		file: filewatch.NewFile(path, MaxFileSize, "clusters", "the --clusters-config file", "the clusters"),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "pfgateway", Name: "cluster_info",
			Help: "1 for each cluster served, with its backend kind (kubelet or apiserver).",
		}, []string{"cluster", "backend"}),
	}
	m.file.MustRegister(reg)
	reg.MustRegister(m.info)
	return m
}

func (m *reloadMetrics) installed(st *state) {
	m.file.Loaded()
	m.info.Reset()
	for _, cl := range st.cfg.Clusters {
		m.info.WithLabelValues(cl.Name, string(cl.Backend)).Set(1)
	}
}
