// Package metrics holds pfgateway's Prometheus metrics. Every label is a
// bounded enum (cluster names come from configuration): per-session detail
// such as user, pod or session id belongs in logs and audit records, never in
// label values.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	namespace = "pfgateway"
	subsystem = "portforward"
)

// Protocol is the client-facing wire protocol of a session.
type Protocol string

const (
	ProtocolSPDY            Protocol = "spdy"
	ProtocolWebSocketTunnel Protocol = "websocket"
	ProtocolWebSocketLegacy Protocol = "websocket_legacy"
)

// Outcome says how a session ended.
type Outcome string

const (
	// OutcomeCompleted: the upgrade succeeded and the session ran to its end.
	OutcomeCompleted Outcome = "completed"
	// OutcomeRejected: the session was refused before the kubelet was asked
	// (unknown pod, pod not scheduled or not running). Requests refused
	// before a session exists are counted by rejected_requests_total.
	OutcomeRejected Outcome = "rejected"
	// OutcomeBackendError: the kubelet could not be reached or answered badly.
	OutcomeBackendError Outcome = "backend_error"
	// OutcomeBackendRefused: the kubelet answered the upgrade with an error
	// status, which was passed through to the client.
	OutcomeBackendRefused Outcome = "backend_refused"
	// OutcomeClosedByGateway: the gateway ended a live session (shutdown).
	OutcomeClosedByGateway Outcome = "closed_by_gateway"
	// OutcomeTerminated: an operator ended the session through the admin API.
	OutcomeTerminated Outcome = "terminated"
	// OutcomeIdleTimeout: the gateway closed a session that relayed no byte
	// in either direction for --session-idle-timeout.
	OutcomeIdleTimeout Outcome = "idle_timeout"
	// OutcomeMaxDuration: the gateway closed a session that reached
	// --max-session-duration.
	OutcomeMaxDuration Outcome = "max_duration"
)

// BackendErrorReason classifies failures talking to a kubelet.
type BackendErrorReason string

const (
	ReasonDial             BackendErrorReason = "dial"
	ReasonTimeout          BackendErrorReason = "timeout"
	ReasonBadResponse      BackendErrorReason = "bad_response"
	ReasonRedirectRefused  BackendErrorReason = "redirect_refused"
	ReasonTooManyRedirects BackendErrorReason = "too_many_redirects"
	ReasonErrorStatus      BackendErrorReason = "error_status"
	ReasonClientUpgrade    BackendErrorReason = "client_upgrade"
)

// Direction of forwarded bytes: up is client → pod, down is pod → client.
const (
	DirectionUp   = "up"
	DirectionDown = "down"
)

// Metrics is the set of pfgateway metrics, registered on one registry.
type Metrics struct {
	activeSessions  *prometheus.GaugeVec
	sessions        *prometheus.CounterVec
	sessionDuration *prometheus.HistogramVec
	bytes           *prometheus.CounterVec
	backendUpgrade  *prometheus.HistogramVec
	backendErrors   *prometheus.CounterVec
	rejected        *prometheus.CounterVec
	forwards        *forwards
	limitHits       *prometheus.CounterVec
	reconnects      *reconnects
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		activeSessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "active_sessions",
			Help: "Port-forward sessions currently open.",
		}, []string{"cluster", "protocol"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "sessions_total",
			Help: "Port-forward sessions ended, by protocol and outcome.",
		}, []string{"cluster", "protocol", "outcome"}),
		sessionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "session_duration_seconds",
			Help: "Duration of port-forward sessions that reached the kubelet.",
			// 10ms to a day: short kubectl runs to the kubelet's 4h stream cap and beyond.
			Buckets: []float64{0.01, 0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}, []string{"cluster", "protocol"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "bytes_total",
			Help: "Bytes relayed after the upgrade; up is client to kubelet, down is kubelet to client.",
		}, []string{"cluster", "protocol", "direction"}),
		backendUpgrade: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "backend_upgrade_duration_seconds",
			Help:    "Time from the client's request to the kubelet's 101 Switching Protocols.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"cluster", "protocol"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "backend_errors_total",
			Help: "Failures reaching or upgrading to a kubelet, by reason.",
		}, []string{"cluster", "reason"}),
	}
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "rejected_requests_total",
		Help: "Port-forward requests refused before a session began (not an upgrade, bad handshake or ports, over a session limit, shutting down) or by the gateway policy, by HTTP status code.",
	}, []string{"cluster", "code"})
	m.forwards = newForwards()
	m.limitHits = newLimitHits()
	reg.MustRegister(m.activeSessions, m.sessions, m.sessionDuration, m.bytes, m.backendUpgrade, m.backendErrors, m.rejected, m.limitHits)
	reg.MustRegister(m.forwards.collectors()...)
	m.reconnects = newReconnects()
	reg.MustRegister(m.reconnects.collectors()...)
	return m
}

// SessionStarted counts a session as active.
func (m *Metrics) SessionStarted(cluster string, p Protocol) {
	m.activeSessions.WithLabelValues(cluster, string(p)).Inc()
}

// SessionEnded records the end of a session. upgraded says whether the session
// reached the kubelet, so that refused requests do not skew the durations.
func (m *Metrics) SessionEnded(cluster string, p Protocol, o Outcome, upgraded bool, d time.Duration) {
	m.activeSessions.WithLabelValues(cluster, string(p)).Dec()
	m.sessions.WithLabelValues(cluster, string(p), string(o)).Inc()
	if upgraded {
		m.sessionDuration.WithLabelValues(cluster, string(p)).Observe(d.Seconds())
	}
}

// ByteCounters returns the counters for bytes up and down, resolved once per
// session so the data path only does an atomic add.
func (m *Metrics) ByteCounters(cluster string, p Protocol) (up, down prometheus.Counter) {
	return m.bytes.WithLabelValues(cluster, string(p), DirectionUp),
		m.bytes.WithLabelValues(cluster, string(p), DirectionDown)
}

// ObserveBackendUpgrade records the time to the kubelet's 101.
func (m *Metrics) ObserveBackendUpgrade(cluster string, p Protocol, d time.Duration) {
	m.backendUpgrade.WithLabelValues(cluster, string(p)).Observe(d.Seconds())
}

// BackendError counts a failure reaching or upgrading to a kubelet.
func (m *Metrics) BackendError(cluster string, r BackendErrorReason) {
	m.backendErrors.WithLabelValues(cluster, string(r)).Inc()
}

// RequestRejected counts a port-forward request refused before its session
// began. code is an HTTP status code, a small bounded set.
func (m *Metrics) RequestRejected(cluster string, code int) {
	m.rejected.WithLabelValues(cluster, strconv.Itoa(code)).Inc()
}
