package e2e

import (
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

const (
	mForwards     = "pfgateway_portforward_forwarded_connections_total"
	mForwardBytes = "pfgateway_portforward_forwarded_connection_bytes"
	mForwardTime  = "pfgateway_portforward_forwarded_connection_duration_seconds"
	// closedPodPort is a container port of pod hash where nothing listens.
	closedPodPort = 7001
)

var forwardLine = regexp.MustCompile(`"Forwarded connection ended" sessionID="([0-9a-f]+)" .* port=(\d+) requestID="(\d+)" bytesUp=(\d+) bytesDown=(\d+) duration="[^"]+" outcome="([a-z_]+)" message="([^"]*)"`)

// forwardLog is one parsed "Forwarded connection ended" line.
type forwardLog struct {
	session, requestID, outcome, message string
	port                                 int
	up, down                             int64
}

// captureLogs sends klog's output to a buffer until the test ends.
func captureLogs(t *testing.T) *syncBuffer {
	buf := &syncBuffer{}
	klog.LogToStderr(false)
	klog.SetOutput(buf)
	t.Cleanup(func() {
		klog.SetOutput(io.Discard)
		klog.LogToStderr(*showLogs)
	})
	return buf
}

func forwardLogs(s string) []forwardLog {
	var out []forwardLog
	for _, m := range forwardLine.FindAllStringSubmatch(s, -1) {
		port, _ := strconv.Atoi(m[2])
		up, _ := strconv.ParseInt(m[4], 10, 64)
		down, _ := strconv.ParseInt(m[5], 10, 64)
		out = append(out, forwardLog{session: m[1], port: port, requestID: m[3], up: up, down: down, outcome: m[6], message: m[7]})
	}
	return out
}

// histogramSum is the sum of the histogram samples of name matching want.
func (ms metrics) histogramSum(name string, want labels) float64 {
	var sum float64
	if mf := ms[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			if matches(m, want) && m.Histogram != nil {
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum
}

// TestForwardedConnectionRecords runs forwarded connections of known sizes
// through the stream-aware splice, then compares the per-connection metrics
// and log lines with what the test did, bytes exact.
func TestForwardedConnectionRecords(t *testing.T) {
	logs := captureLogs(t)
	e := newEnv(t, func(o *options.Options) { o.Streams.MetricsPorts = []int{hashPort} })
	// Each hash transfer adds its 24-byte header up and the 32-byte digest down.
	sizes := [][2]int64{{1 << 20, 3 << 20}, {5 << 20, 0}, {0, 2 << 20}}
	want := map[string]float64{}
	var wantUp, wantDown float64
	for kind, protocol := range map[dialerKind]string{dialSPDY: "spdy", dialTunnel: "websocket"} {
		f := startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "hash")), hashPort)
		for _, s := range sizes {
			c, err := f.dial()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := transfer(t, c, s[0], s[1]); err != nil {
				t.FailNow()
			}
			_ = c.Close()
			wantUp += float64(s[0] + 24)
			wantDown += float64(s[1] + 32)
		}
		f.stop()
		want[fmt.Sprintf("outcome=client_closed,port=%d,protocol=%s", hashPort, protocol)] = float64(len(sizes))
	}
	// Nothing listens on the pod's port 7001: the kubelet's error text is
	// the record's message, and client-go ends that session.
	f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), closedPodPort)
	if c, err := f.dial(); err == nil {
		_, _ = io.Copy(io.Discard, c)
		_ = c.Close()
	}
	f.stop()
	want["outcome=kubelet_error,port=other,protocol=spdy"] = 1
	e.waitIdle(t)

	m := e.scrape(t)
	if got := nonZero(m.series(mForwards)); !maps.Equal(got, want) {
		t.Errorf("%s:%s\nwant:%s", mForwards, formatSeries(got), formatSeries(want))
	}
	if got := m.histogramSum(mForwardBytes, labels{"direction": "up"}); got != wantUp {
		t.Errorf("%s{direction=up} sums to %.0f bytes, want %.0f", mForwardBytes, got, wantUp)
	}
	if got := m.histogramSum(mForwardBytes, labels{"direction": "down"}); got != wantDown {
		t.Errorf("%s{direction=down} sums to %.0f bytes, want %.0f", mForwardBytes, got, wantDown)
	}
	if got := m.value(mForwardTime, nil); got != 7 {
		t.Errorf("%s has %.0f samples, want 7", mForwardTime, got)
	}

	lines := forwardLogs(logs.String())
	if len(lines) != 7 {
		t.Fatalf("%d forwarded-connection log lines, want 7:\n%s", len(lines), logs.String())
	}
	for i, l := range lines[:6] {
		s := sizes[i%3]
		if l.port != hashPort || l.up != s[0]+24 || l.down != s[1]+32 || l.outcome != "client_closed" || l.message != "" {
			t.Errorf("line %d = %+v, want port %d, %d up, %d down, client_closed", i, l, hashPort, s[0]+24, s[1]+32)
		}
		// client-go numbers a session's connections from 0.
		if l.requestID != strconv.Itoa(i%3) || l.session != lines[i-i%3].session {
			t.Errorf("line %d: session %s request %s, want request %d of session %s", i, l.session, l.requestID, i%3, lines[i-i%3].session)
		}
	}
	last := lines[6]
	if last.port != closedPodPort || last.outcome != "kubelet_error" || last.up != 0 || last.down != 0 ||
		!strings.HasPrefix(last.message, fmt.Sprintf("error forwarding port %d to pod", closedPodPort)) {
		t.Errorf("kubelet error line = %+v", last)
	}
	if sessions := slices.Compact([]string{lines[0].session, lines[3].session, last.session}); len(sessions) != 3 {
		t.Errorf("sessions %v are not three distinct ones", sessions)
	}
}
