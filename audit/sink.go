package audit

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	apiaudit "k8s.io/apiserver/pkg/audit"
	"k8s.io/klog/v2"
)

// maxBatch bounds the events handed to a backend at once (one webhook
// request carries them as an EventList), as the apiserver's batch backend does.
const maxBatch = 400

// Event results, the result label of pfgateway_audit_events_total.
const (
	resultWritten = "written"
	resultDropped = "dropped"
	resultFailed  = "failed"
)

// sink is one backend behind a bounded buffer. Add never blocks: the data
// path must not wait for an audit backend. One goroutine writes the buffer
// to the backend in batches.
//
// Hand-written rather than the apiserver's plugin/pkg/audit/buffered: that
// one does not report whether its delegate's writes failed, which
// --audit-overflow=refuse needs, and does not count per sink.
type sink struct {
	name    string
	backend apiaudit.Backend

	mu     sync.RWMutex // protects closed against Add racing Close
	closed bool
	buf    chan *auditinternal.Event
	done   chan struct{} // closed when run returns

	started                  bool        // run was started (by Start)
	failing                  atomic.Bool // the last write failed
	written, dropped, failed prometheus.Counter
}

func newSink(name string, b apiaudit.Backend, size int, m *sinkMetrics) *sink {
	s := &sink{
		name: name, backend: b,
		buf: make(chan *auditinternal.Event, size), done: make(chan struct{}),
		written: m.events.WithLabelValues(name, resultWritten),
		dropped: m.events.WithLabelValues(name, resultDropped),
		failed:  m.events.WithLabelValues(name, resultFailed),
	}
	m.buffered.WithLabelValues(name) // the series exists from the start
	m.register(s)
	return s
}

// Add queues ev, or drops and counts it when the buffer is full or the sink
// is closed.
func (s *sink) Add(ev *auditinternal.Event) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.dropped.Inc()
		return
	}
	select {
	case s.buf <- ev:
	default:
		s.dropped.Inc()
	}
}

// start starts writing to the backend.
func (s *sink) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started && !s.closed {
		s.started = true
		go s.run()
	}
}

// Unavailable: the buffer is full or the last write failed.
func (s *sink) Unavailable() bool { return len(s.buf) == cap(s.buf) || s.failing.Load() }

func (s *sink) run() {
	defer close(s.done)
	batch := make([]*auditinternal.Event, 0, maxBatch)
	for ev := range s.buf {
		batch = append(batch[:0], ev)
	more:
		for len(batch) < maxBatch {
			select {
			case ev, ok := <-s.buf:
				if !ok {
					break more
				}
				batch = append(batch, ev)
			default:
				break more
			}
		}
		if s.backend.ProcessEvents(batch...) {
			s.failing.Store(false)
			s.written.Add(float64(len(batch)))
		} else {
			// The backend has logged why (audit.HandlePluginError).
			s.failing.Store(true)
			s.failed.Add(float64(len(batch)))
		}
	}
}

// Close stops accepting events and writes what is buffered, waiting until
// ctx ends at most; events still buffered then are lost (and logged).
func (s *sink) Close(ctx context.Context) {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.buf)
	}
	started := s.started
	s.mu.Unlock()
	if !started {
		s.backend.Shutdown()
		return
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		klog.ErrorS(ctx.Err(), "Audit sink did not flush in time", "sink", s.name, "bufferedEvents", len(s.buf))
	}
	s.backend.Shutdown()
}

// sinkMetrics are the audit's metrics on the gateway's registry.
type sinkMetrics struct {
	events   *prometheus.CounterVec
	buffered *prometheus.GaugeVec
	refused  prometheus.Counter

	mu    sync.Mutex
	sinks []*sink
}

func newSinkMetrics(reg prometheus.Registerer) *sinkMetrics {
	m := &sinkMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pfgateway_audit_events_total",
			Help: "Audit events by sink and result: written to the backend, dropped (buffer full or sink closed) or failed (the backend's write failed).",
		}, []string{"sink", "result"}),
		buffered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pfgateway_audit_buffered_events",
			Help: "Audit events waiting in a sink's buffer (capacity: --audit-buffer-size).",
		}, []string{"sink"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pfgateway_audit_refused_requests_total",
			Help: "Port-forward requests refused with 503 because an audit sink was unavailable (--audit-overflow=refuse).",
		}),
	}
	reg.MustRegister(m.events, m.refused, m)
	return m
}

func (m *sinkMetrics) register(s *sink) {
	m.mu.Lock()
	m.sinks = append(m.sinks, s)
	m.mu.Unlock()
}

// Describe and Collect make the buffer gauge read the buffers at scrape time.
func (m *sinkMetrics) Describe(ch chan<- *prometheus.Desc) { m.buffered.Describe(ch) }

func (m *sinkMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	for _, s := range m.sinks {
		m.buffered.WithLabelValues(s.name).Set(float64(len(s.buf)))
	}
	m.mu.Unlock()
	m.buffered.Collect(ch)
}
