package metrics

import "github.com/prometheus/client_golang/prometheus"

// Results of a kubelet re-dial (ReconnectResult): success, the pod gone or
// not resolvable, or a BackendErrorReason. A bounded set.
const (
	ReconnectSuccess      = "success"
	ReconnectPodNotFound  = "pod_not_found"
	ReconnectResolveError = "resolve_error"
)

// reconnects count the kubelet connections a stream-aware session lost
// while its client stayed, and the dials that tried to replace them.
type reconnects struct {
	lost  *prometheus.CounterVec
	dials *prometheus.CounterVec
}

func newReconnects() *reconnects {
	return &reconnects{
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "kubelet_connections_lost_total",
			Help: "Kubelet connections of live sessions that ended (kubelet restart or GOAWAY, network cut, ping timeout) while the client's session went on (--kubelet-reconnect).",
		}, []string{"cluster"}),
		dials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "kubelet_reconnects_total",
			Help: "Attempts to replace a lost kubelet connection (re-resolve the pod, dial, upgrade), by result: success, pod_not_found, resolve_error, or the backend error reason.",
		}, []string{"cluster", "result"}),
	}
}

func (r *reconnects) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.lost, r.dials}
}

// KubeletLost counts a kubelet connection lost under a live session.
func (m *Metrics) KubeletLost(cluster string) { m.reconnects.lost.WithLabelValues(cluster).Inc() }

// Reconnect counts one re-dial attempt by result (the constants above or a
// BackendErrorReason).
func (m *Metrics) Reconnect(cluster, result string) {
	m.reconnects.dials.WithLabelValues(cluster, result).Inc()
}
