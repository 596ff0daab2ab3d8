package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric names the gateway exposes.
const (
	mSessions      = "pfgateway_portforward_sessions_total"
	mActive        = "pfgateway_portforward_active_sessions"
	mBytes         = "pfgateway_portforward_bytes_total"
	mUpgrade       = "pfgateway_portforward_backend_upgrade_duration_seconds"
	mBackendErrors = "pfgateway_portforward_backend_errors_total"
)

// metrics is one scrape of the admin /metrics endpoint.
type metrics map[string]*dto.MetricFamily

// scrape reads /metrics over HTTP from the admin listener and parses it.
func (e *env) scrape(t testing.TB) metrics {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + e.gw.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing metrics: %v", err)
	}
	return mfs
}

// labels is a label subset a series must match.
type labels map[string]string

func matches(m *dto.Metric, want labels) bool {
	have := map[string]string{}
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// value sums the counters or gauges of name whose labels include want; for a
// histogram it sums the sample counts.
func (ms metrics) value(name string, want labels) float64 {
	var sum float64
	mf := ms[name]
	if mf == nil {
		return 0
	}
	for _, m := range mf.GetMetric() {
		if !matches(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// series lists every series of name as "k=v,k=v" → value, for exact
// comparisons and readable failure messages. Label "cluster" is left out.
func (ms metrics) series(name string) map[string]float64 {
	out := map[string]float64{}
	mf := ms[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		var parts []string
		for _, lp := range m.GetLabel() {
			if lp.GetName() != "cluster" {
				parts = append(parts, lp.GetName()+"="+lp.GetValue())
			}
		}
		sort.Strings(parts)
		k := strings.Join(parts, ",")
		switch {
		case m.Counter != nil:
			out[k] += m.GetCounter().GetValue()
		case m.Gauge != nil:
			out[k] += m.GetGauge().GetValue()
		case m.Histogram != nil:
			out[k] += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

// nonZero drops zero-valued entries (gauges back to 0 are still exported).
func nonZero(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func formatSeries(m map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "\n\t{%s} %g", k, m[k])
	}
	return b.String()
}

// waitSessions polls until sessions_total{protocol,outcome} reaches want
// (sessions end asynchronously after the client goes away) and fails if it
// overshoots.
func (e *env) waitSessions(t testing.TB, protocol, outcome string, want float64) {
	t.Helper()
	var got float64
	eventually(t, 20*time.Second, fmt.Sprintf("%s{protocol=%q,outcome=%q} to reach %g", mSessions, protocol, outcome, want), func() bool {
		got = e.scrape(t).value(mSessions, labels{"protocol": protocol, "outcome": outcome})
		return got >= want
	})
	if got != want {
		t.Fatalf("%s{protocol=%q,outcome=%q} = %g, want %g", mSessions, protocol, outcome, got, want)
	}
}

// waitIdle polls until no session is active.
func (e *env) waitIdle(t testing.TB) {
	t.Helper()
	eventually(t, 20*time.Second, "active_sessions to return to 0", func() bool {
		return e.scrape(t).value(mActive, nil) == 0 && e.gw.Sessions.Len() == 0
	})
}
