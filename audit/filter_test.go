package audit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/session"
	"github.com/pfgateway/pfgateway/status"
)

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// TestFilterAndObserver drives the filter and a real session registry the
// way the port-forward handler does, and checks which events come out.
func TestFilterAndObserver(t *testing.T) {
	b := &fakeBackend{}
	a, _ := newTestAuditor(t, OverflowDrop, 100, b)
	reg := session.NewRegistry(metrics.New(prometheus.NewRegistry()))
	reg.SetObserver(a)
	begin := func(r *http.Request) *session.Session {
		s, err := reg.Begin(&session.Session{Cluster: "prod", Namespace: "ns1", Pod: "web-0", Protocol: metrics.ProtocolSPDY, Context: r.Context()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    []string // stage/code/outcome of each event
	}{{
		name: "upgraded session with one connection",
		handler: func(w http.ResponseWriter, r *http.Request) {
			s := begin(r)
			s.SetNode("n1")
			s.Upgraded(nopCloser{})
			s.Forwarded(relay.Record{RequestID: "0", Port: 80, Outcome: relay.OutcomePodClosed})
			s.End(metrics.OutcomeCompleted, "")
		},
		want: []string{"ResponseStarted/101/", "ResponseComplete/101/pod_closed", "ResponseComplete/101/completed"},
	}, {
		name: "session rejected before the upgrade",
		handler: func(w http.ResponseWriter, r *http.Request) {
			s := begin(r)
			err := apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "web-0")
			status.Write(w, r, err)
			s.End(metrics.OutcomeRejected, err.Error())
		},
		want: []string{"ResponseComplete/404/rejected"},
	}, {
		name: "refused before any session",
		handler: func(w http.ResponseWriter, r *http.Request) {
			status.Write(w, r, apierrors.NewBadRequest("not an upgrade"))
		},
		want: []string{"ResponseComplete/400/"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.mu.Lock()
			b.events = nil
			b.mu.Unlock()
			rec := httptest.NewRecorder()
			a.WithRefused(tt.handler).ServeHTTP(rec, pfRequest(t, alice))
			auditID := rec.Header().Get("Audit-Id")
			waitFor(t, func() bool { return b.count() >= len(tt.want) })
			b.mu.Lock()
			defer b.mu.Unlock()
			var got []string
			for _, ev := range b.events {
				got = append(got, string(ev.Stage)+"/"+strconv.Itoa(int(ev.ResponseStatus.Code))+"/"+ev.Annotations[AnnotOutcome])
				if ev.Annotations[AnnotPort] == "" && string(ev.AuditID) != auditID {
					t.Errorf("event auditID %s, the response's Audit-Id %q", ev.AuditID, auditID)
				}
				if ev.User.Username != "alice" || ev.Annotations[AnnotCluster] != "prod" {
					t.Errorf("event %+v", ev)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("events %v, want %v", got, tt.want)
			}
			if tt.want[0] == "ResponseComplete/404/rejected" {
				ev := b.events[0]
				if ev.Annotations[AnnotSessionID] == "" || ev.ResponseStatus.Message != `pods "web-0" not found` || ev.ResponseStatus.Reason != "NotFound" {
					t.Errorf("rejected-session event %+v", ev)
				}
			}
		})
	}

	// Other requests pass untouched.
	before := b.count()
	other := httptest.NewRequest(http.MethodGet, "/api/v1/namespaces/ns1/pods/web-0", nil)
	rec := httptest.NewRecorder()
	a.WithRefused(http.NotFoundHandler()).ServeHTTP(rec, other)
	a.WithFailedAuthentication(http.NotFoundHandler()).ServeHTTP(rec, other)
	a.Close(context.Background())
	if rec.Header().Get("Audit-Id") != "" || b.count() != before {
		t.Errorf("a request that is not a port-forward was audited: header %q, %d events", rec.Header().Get("Audit-Id"), b.count())
	}
}
