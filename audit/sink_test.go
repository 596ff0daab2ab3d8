package audit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
)

// fakeBackend records events; while gate is open it blocks in
// ProcessEvents, and fail makes writes fail.
type fakeBackend struct {
	mu       sync.Mutex
	events   []*auditinternal.Event
	gate     chan struct{} // nil: never blocks
	entered  chan struct{} // receives once per ProcessEvents call
	fail     atomic.Bool
	shutdown atomic.Bool
}

func (f *fakeBackend) ProcessEvents(ev ...*auditinternal.Event) bool {
	select {
	case f.entered <- struct{}{}:
	default:
	}
	if f.gate != nil {
		<-f.gate
	}
	if f.fail.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev...)
	return true
}
func (f *fakeBackend) Run(<-chan struct{}) error { return nil }
func (f *fakeBackend) Shutdown()                 { f.shutdown.Store(true) }
func (f *fakeBackend) String() string            { return "fake" }

func (f *fakeBackend) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events)
}

func newTestAuditor(t *testing.T, overflow string, size int, b *fakeBackend) (*Auditor, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := New(Config{Backends: []Backend{{Name: "fake", Backend: b}}, BufferSize: size, Overflow: overflow, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	return a, reg
}

func eventsTotal(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	return gathered(t, reg, "pfgateway_audit_events_total", map[string]string{"sink": "fake", "result": result})
}

func gathered(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func ev(id string) *auditinternal.Event {
	return &auditinternal.Event{AuditID: k8stypes.UID("id-" + id)}
}

// TestOverflow: with the backend blocked on the first event, the buffer
// takes size more; the rest are dropped and counted, Add never blocks, and
// everything buffered is written once the backend recovers.
func TestOverflow(t *testing.T) {
	for _, mode := range []string{OverflowDrop, OverflowRefuse} {
		t.Run(mode, func(t *testing.T) {
			b := &fakeBackend{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
			a, reg := newTestAuditor(t, mode, 3, b)
			a.emit(ev("0"))
			<-b.entered // the writer holds event 0
			if a.Unavailable() {
				t.Fatal("unavailable with an empty buffer")
			}
			start := time.Now()
			for i := 1; i <= 10; i++ {
				a.emit(ev("x"))
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("emit blocked for %v", d)
			}
			if got := eventsTotal(t, reg, resultDropped); got != 7 {
				t.Errorf("dropped %v, want 7", got)
			}
			if got := gathered(t, reg, "pfgateway_audit_buffered_events", map[string]string{"sink": "fake"}); got != 3 {
				t.Errorf("buffered gauge %v, want 3", got)
			}
			if !a.Unavailable() {
				t.Error("a full buffer should make the sink unavailable")
			}
			// The filter refuses new sessions only in refuse mode.
			rec := httptest.NewRecorder()
			called := false
			a.WithRefused(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })).ServeHTTP(rec, pfRequest(t, alice))
			if mode == OverflowRefuse {
				var st metav1.Status
				_ = json.Unmarshal(rec.Body.Bytes(), &st)
				if called || rec.Code != 503 || st.Code != 503 || st.Reason != metav1.StatusReasonServiceUnavailable || st.Message != "audit backend unavailable" {
					t.Errorf("refuse mode: handler called %v, answer %d %s", called, rec.Code, rec.Body)
				}
				if got := gathered(t, reg, "pfgateway_audit_refused_requests_total", nil); got != 1 {
					t.Errorf("refused requests %v, want 1", got)
				}
			} else if !called {
				t.Errorf("drop mode refused the request: %d %s", rec.Code, rec.Body)
			}
			close(b.gate)
			waitFor(t, func() bool { return b.count() == 4 })
			if got := eventsTotal(t, reg, resultWritten); got != 4 {
				t.Errorf("written %v, want 4", got)
			}
			if a.Unavailable() {
				t.Error("still unavailable after draining")
			}
		})
	}
}

// TestFailingBackend: a failed write counts its events as failed and makes
// the sink unavailable until a write succeeds.
func TestFailingBackend(t *testing.T) {
	b := &fakeBackend{entered: make(chan struct{}, 1)}
	b.fail.Store(true)
	a, reg := newTestAuditor(t, OverflowRefuse, 10, b)
	a.emit(ev("1"))
	waitFor(t, func() bool { return eventsTotal(t, reg, resultFailed) == 1 })
	if !a.Unavailable() {
		t.Fatal("a failed write should make the sink unavailable")
	}
	b.fail.Store(false)
	a.emit(ev("2"))
	waitFor(t, func() bool { return eventsTotal(t, reg, resultWritten) == 1 })
	if a.Unavailable() {
		t.Fatal("a successful write should make the sink available again")
	}
}

// TestClose flushes what is buffered, shuts the backend down, drops later
// events, and gives up on a stuck backend when the context ends.
func TestClose(t *testing.T) {
	b := &fakeBackend{}
	a, reg := newTestAuditor(t, OverflowDrop, 100, b)
	for range 50 {
		a.emit(ev("x"))
	}
	a.Close(context.Background())
	if b.count() != 50 || !b.shutdown.Load() {
		t.Fatalf("after Close: %d events written, shutdown %v", b.count(), b.shutdown.Load())
	}
	a.emit(ev("late"))
	if got := eventsTotal(t, reg, resultDropped); got != 1 {
		t.Errorf("dropped after close %v, want 1", got)
	}

	stuck := &fakeBackend{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	a2, _ := newTestAuditor(t, OverflowDrop, 10, stuck)
	a2.emit(ev("1"))
	<-stuck.entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	a2.Close(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close waited %v for a stuck backend", d)
	}
	close(stuck.gate) // lets the writer goroutine end

	var nilAuditor *Auditor
	nilAuditor.Start()
	nilAuditor.Close(context.Background())
	if h := http.NotFoundHandler(); nilAuditor.WithRefused(h) == nil || nilAuditor.WithFailedAuthentication(h) == nil {
		t.Error("a nil Auditor's filters must pass through")
	}
}

func TestNewValidates(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{BufferSize: 0, Overflow: OverflowDrop, Registry: reg}); err == nil {
		t.Error("buffer size 0 accepted")
	}
	if _, err := New(Config{BufferSize: 1, Overflow: "block", Registry: reg}); err == nil {
		t.Error("overflow mode block accepted")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}
