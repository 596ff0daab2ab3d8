package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PortOther labels forwarded connections to ports not named by
// --metrics-port-labels, so the port label stays bounded by configuration.
const PortOther = "other"

// forwards are the per-forwarded-connection metrics of the stream-aware
// splice: one sample per error + data stream pair when it ends.
type forwards struct {
	total    *prometheus.CounterVec
	bytes    *prometheus.HistogramVec
	duration *prometheus.HistogramVec
	ports    map[uint16]string
}

func newForwards() *forwards {
	return &forwards{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "forwarded_connections_total",
			Help: "Forwarded connections (SPDY error + data stream pairs) ended, by port (only ports named by --metrics-port-labels, else \"other\") and outcome.",
		}, []string{"cluster", "protocol", "port", "outcome"}),
		bytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "forwarded_connection_bytes",
			Help: "Payload bytes one forwarded connection moved; up is client to pod, down is pod to client.",
			// 1 KiB to 16 GiB in powers of four.
			Buckets: prometheus.ExponentialBuckets(1<<10, 4, 13),
		}, []string{"cluster", "protocol", "direction"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "forwarded_connection_duration_seconds",
			Help:    "Lifetime of forwarded connections, from the first stream to the last.",
			Buckets: []float64{0.001, 0.01, 0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}, []string{"cluster", "protocol"}),
		ports: map[uint16]string{},
	}
}

func (f *forwards) collectors() []prometheus.Collector {
	return []prometheus.Collector{f.total, f.bytes, f.duration}
}

// SetPortLabels names the ports that get their own port label; call it
// before serving.
func (m *Metrics) SetPortLabels(ports []int) {
	for _, p := range ports {
		m.forwards.ports[uint16(p)] = strconv.Itoa(p)
	}
}

// PortLabel is the port label value for port.
func (m *Metrics) PortLabel(port uint16) string {
	if l, ok := m.forwards.ports[port]; ok {
		return l
	}
	return PortOther
}

// ForwardEnded records one forwarded connection. outcome is one of the
// relay's bounded outcomes.
func (m *Metrics) ForwardEnded(cluster string, p Protocol, port uint16, outcome string, up, down int64, d time.Duration) {
	f := m.forwards
	f.total.WithLabelValues(cluster, string(p), m.PortLabel(port), outcome).Inc()
	f.bytes.WithLabelValues(cluster, string(p), DirectionUp).Observe(float64(up))
	f.bytes.WithLabelValues(cluster, string(p), DirectionDown).Observe(float64(down))
	f.duration.WithLabelValues(cluster, string(p)).Observe(d.Seconds())
}
