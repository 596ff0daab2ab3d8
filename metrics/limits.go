package metrics

import "github.com/prometheus/client_golang/prometheus"

// Limit names a session limit, the limit label of limit_hits_total.
type Limit string

const (
	LimitSessions           Limit = "max_sessions"
	LimitSessionsPerUser    Limit = "max_sessions_per_user"
	LimitForwardsPerSession Limit = "max_forwards_per_session"
	LimitIdleTimeout        Limit = "idle_timeout"
	LimitSessionDuration    Limit = "max_session_duration"
)

// LimitSource says what set a limit that was hit: a flag, or the gateway
// policy's limits for the caller (which can only be tighter).
type LimitSource string

const (
	LimitSourceFlag   LimitSource = "flag"
	LimitSourcePolicy LimitSource = "policy"
)

func newLimitHits() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "limit_hits_total",
		Help: "Session limits hit, by limit and by what set it (flag or policy): a session refused with 429, a forwarded connection refused on its error stream, or a session closed for idleness or age.",
	}, []string{"cluster", "limit", "source"})
}

// LimitHit counts one hit of limit l, set by src.
func (m *Metrics) LimitHit(cluster string, l Limit, src LimitSource) {
	m.limitHits.WithLabelValues(cluster, string(l), string(src)).Inc()
}
