package session

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pfgateway/pfgateway/metrics"
)

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func newRegistry() (*Registry, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return NewRegistry(metrics.New(reg)), reg
}

func TestSessionLifecycle(t *testing.T) {
	r, reg := newRegistry()
	s, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, User: "alice"})
	if err != nil || s.ID == "" || r.Len() != 1 {
		t.Fatalf("begin: %v %q %d", err, s.ID, r.Len())
	}
	if got := sum(t, reg, "pfgateway_portforward_active_sessions"); got != 1 {
		t.Fatalf("active %v", got)
	}
	s.Upgraded(closerFunc(func() error { return nil }))
	s.AddUp(10)
	s.AddDown(20)
	s.End(metrics.OutcomeCompleted, "")
	s.End(metrics.OutcomeBackendError, "second End must not count")
	if up, down := s.Bytes(); up != 10 || down != 20 || r.Len() != 0 {
		t.Fatalf("bytes %d/%d live %d", up, down, r.Len())
	}
	want := map[string]float64{
		"pfgateway_portforward_active_sessions":          0,
		"pfgateway_portforward_sessions_total":           1,
		"pfgateway_portforward_bytes_total":              30,
		"pfgateway_portforward_session_duration_seconds": 1, // sample count
	}
	for name, v := range want {
		if got := sum(t, reg, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
}

func TestDrain(t *testing.T) {
	t.Run("should wait for sessions that end within the grace period", func(t *testing.T) {
		r, _ := newRegistry()
		s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
		go func() { time.Sleep(50 * time.Millisecond); s.End(metrics.OutcomeCompleted, "") }()
		if n := r.Drain(5 * time.Second); n != 0 {
			t.Fatalf("closed %d sessions", n)
		}
		if _, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY}); err == nil {
			t.Fatal("a draining registry accepted a session")
		}
	})
	t.Run("should close sessions still open after the grace period", func(t *testing.T) {
		r, reg := newRegistry()
		s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolWebSocketTunnel})
		var closed atomic.Bool
		s.Upgraded(closerFunc(func() error { closed.Store(true); go s.End(metrics.OutcomeCompleted, "closed"); return nil }))
		start := time.Now()
		if n := r.Drain(100 * time.Millisecond); n != 1 || !closed.Load() {
			t.Fatalf("closed %d, closer called %v", n, closed.Load())
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("drain took %v", d)
		}
		if got := sumLabel(t, reg, "pfgateway_portforward_sessions_total", "outcome", string(metrics.OutcomeClosedByGateway)); got != 1 {
			t.Fatalf("closed_by_gateway = %v", got)
		}
	})
}

// sum adds every sample of a metric family (histograms: the sample count),
// optionally only those with label = value.
func sumLabel(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			if label != "" {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == label && lp.GetValue() != value {
						continue metric
					}
				}
			}
			switch {
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Histogram != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

func sum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return sumLabel(t, reg, name, "", "")
}
