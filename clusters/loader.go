package clusters

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pfgateway/pfgateway/filewatch"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Reload results, the values of the reloads counter's result label.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
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
	data, err := readFile(m.path)
	key := "error: " + fmt.Sprint(err)
	if err == nil {
		key = hashOf(data)
		if key == cur.cfg.Hash {
			m.failed = ""
			return
		}
	}
	if key == m.failed {
		return
	}
	var st *state
	if err == nil {
		var cfg *Config
		if cfg, err = m.parse(data); err == nil {
			st, err = m.build(cfg, cur)
		}
	}
	if err != nil {
		m.failed = key
		m.metrics.failed()
		klog.ErrorS(err, "Keeping the clusters in force", "path", m.path, "hash", cur.cfg.Hash, "clusters", cur.cfg.Names())
		return
	}
	m.failed = ""
	m.metrics.reloads.WithLabelValues(ResultSuccess).Inc()
	m.install(st)
	klog.InfoS("Reloaded the clusters file", "path", m.path, "hash", st.cfg.Hash, "clusters", st.cfg.Names())
}

// readFile reads at most MaxFileSize+1 bytes, so Parse can refuse a larger
// file without it being read whole.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}

// reloadMetrics are the clusters file's metrics.
type reloadMetrics struct {
	reloads  *prometheus.CounterVec
	lastTime *prometheus.GaugeVec
	info     *prometheus.GaugeVec
}

func newReloadMetrics(reg Registerer) *reloadMetrics {
	m := &reloadMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pfgateway", Subsystem: "clusters", Name: "reloads_total",
			Help: "Reloads of the --clusters-config file after it changed, by result; a failed reload keeps the clusters in force.",
		}, []string{"result"}),
		lastTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "pfgateway", Subsystem: "clusters", Name: "last_reload_timestamp_seconds",
			Help: "Unix time of the last reload of the --clusters-config file, by result (success includes the load at start).",
		}, []string{"result"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "pfgateway", Name: "cluster_info",
			Help: "1 for each cluster served, with its backend kind (kubelet or apiserver).",
		}, []string{"cluster", "backend"}),
	}
	for _, r := range []string{ResultSuccess, ResultFailure} {
		m.reloads.WithLabelValues(r)
	}
	reg.MustRegister(m.reloads, m.lastTime, m.info)
	return m
}

func (m *reloadMetrics) installed(st *state) {
	m.lastTime.WithLabelValues(ResultSuccess).SetToCurrentTime()
	m.info.Reset()
	for _, cl := range st.cfg.Clusters {
		m.info.WithLabelValues(cl.Name, string(cl.Backend)).Set(1)
	}
}

func (m *reloadMetrics) failed() {
	m.reloads.WithLabelValues(ResultFailure).Inc()
	m.lastTime.WithLabelValues(ResultFailure).SetToCurrentTime()
}
