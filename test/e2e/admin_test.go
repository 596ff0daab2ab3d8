package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/pki"
	"github.com/pfgateway/pfgateway/session"
)

// adminDo sends method path to the admin listener and returns the code and body.
func (e *env) adminDo(t *testing.T, method, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.gw.AdminAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// listSessions is GET /sessions, decoded.
func (e *env) listSessions(t *testing.T) []session.Snapshot {
	t.Helper()
	code, body := e.adminDo(t, http.MethodGet, "/sessions")
	var l struct {
		Kind, APIVersion string
		Items            []session.Snapshot
	}
	if err := json.Unmarshal(body, &l); code != 200 || err != nil || l.Kind != "SessionList" || l.APIVersion != "pfgateway.io/v1alpha1" {
		t.Fatalf("GET /sessions: %d %v %s", code, err, body)
	}
	return l.Items
}

// TestAdminSessions lists two live sessions (alice over SPDY to pod hash,
// bob over the WebSocket tunnel to pod hash2), terminates the first through
// the admin API and checks what the client, the other session, the metrics
// and the audit log see.
func TestAdminSessions(t *testing.T) {
	const up, down = 300 << 10, 1 << 20
	logPath := filepath.Join(t.TempDir(), "audit.log")
	e := newEnv(t, func(o *options.Options) { o.Audit.LogPath = logPath })
	e.addPod(devcluster.Pod{Name: "hash2", Ports: map[int32]string{hashPort: e.hash.Addr()}})
	bob, err := e.cluster.CA.Issue(pki.IssueOptions{CommonName: "bob", Organization: []string{"ops"}, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	bobCfg := rest.CopyConfig(e.cfg)
	bobCfg.CertData, bobCfg.KeyData = bob.CertPEM, bob.KeyPEM

	began := time.Now()
	spdyF := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
	wsF := startForward(t, dialer(t, dialTunnel, bobCfg, e.pfURL("", "hash2")), hashPort)
	for _, f := range []*forward{spdyF, wsF} {
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := transfer(t, c, up, down); err != nil {
			t.FailNow()
		}
		_ = c.Close()
	}
	transferred := time.Now()

	// The listed bytes are the session's counters, the same ones bytes_total
	// adds up; client-go's pings may move a few bytes between two reads, so
	// read until the metric is the same before and after the listing.
	var list []session.Snapshot
	eventually(t, 20*time.Second, "a listing with both forwarded connections ended and steady byte counts", func() bool {
		before := e.gatewayMetrics(t)
		list = e.listSessions(t)
		after := e.gatewayMetrics(t)
		if len(list) != 2 || list[0].Forwards != 1 || list[1].Forwards != 1 {
			return false
		}
		for _, s := range list {
			for _, d := range []struct {
				dir string
				got int64
			}{{"up", s.BytesUp}, {"down", s.BytesDown}} {
				l := labels{"protocol": string(s.Protocol), "direction": d.dir}
				if m := before.value(mBytes, l); m != after.value(mBytes, l) || m != float64(d.got) {
					return false
				}
			}
		}
		return true
	})
	now := time.Now()
	for i, want := range []struct {
		user, pod, protocol string
		groups              []string
	}{{"alice", "hash", "spdy", []string{"devs", "system:authenticated"}}, {"bob", "hash2", "websocket", []string{"ops", "system:authenticated"}}} {
		s := list[i]
		if s.ID == "" || s.User != want.user || !slices.Equal(s.Groups, want.groups) || s.Pod != want.pod || string(s.Protocol) != want.protocol ||
			s.Cluster != "default" || s.Namespace != "default" || s.Node != devcluster.NodeName || !strings.HasPrefix(s.Source, "127.0.0.1:") ||
			len(s.Ports) != 0 || !s.Upgraded {
			t.Errorf("session %d: %+v, want user %s pod %s protocol %s", i, s, want.user, want.pod, want.protocol)
		}
		// Payload plus framing (SPDY frames, WebSocket headers, pings): 1% + 64 KiB.
		if s.BytesUp < up || s.BytesUp > up+up/100+64<<10 || s.BytesDown < down || s.BytesDown > down+down/100+64<<10 {
			t.Errorf("session %d bytes up %d down %d for %d/%d of payload", i, s.BytesUp, s.BytesDown, up, down)
		}
		if s.StartTime.Before(began.Add(-time.Second)) || s.StartTime.After(transferred) ||
			s.LastActivity.Before(s.StartTime) || s.LastActivity.After(now) ||
			s.AgeSeconds <= 0 || s.AgeSeconds > now.Sub(began).Seconds()+1 || s.IdleSeconds < 0 || s.IdleSeconds > s.AgeSeconds {
			t.Errorf("session %d times: start %v last %v age %v idle %v (began %v, transferred %v)", i, s.StartTime, s.LastActivity, s.AgeSeconds, s.IdleSeconds, began, transferred)
		}
	}
	victim, survivor := list[0], list[1]
	if code, body := e.adminDo(t, http.MethodGet, "/sessions/"+victim.ID); code != 200 || !strings.Contains(string(body), `"user":"alice"`) {
		t.Errorf("GET /sessions/%s: %d %s", victim.ID, code, body)
	}

	code, body := e.adminDo(t, http.MethodDelete, "/sessions/"+victim.ID)
	var st metav1.Status
	if err := json.Unmarshal(body, &st); code != 200 || err != nil || st.Status != metav1.StatusSuccess {
		t.Fatalf("DELETE: %d %v %s", code, err, body)
	}
	select {
	case err := <-spdyF.done:
		t.Logf("the terminated client's ForwardPorts returned: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the terminated session's ForwardPorts did not return")
	}
	e.waitSessions(t, "spdy", "terminated", 1)
	c, err := wsF.dial()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := transfer(t, c, up, down); err != nil {
		t.FailNow()
	}
	_ = c.Close()
	if l := e.listSessions(t); len(l) != 1 || l[0].ID != survivor.ID {
		t.Errorf("after DELETE: %+v", l)
	}

	for _, tc := range []struct {
		method, path, reason string
		code                 int
	}{
		{http.MethodDelete, "/sessions/" + victim.ID, "NotFound", 404},
		{http.MethodDelete, "/sessions/nope", "NotFound", 404},
		{http.MethodGet, "/sessions/nope", "NotFound", 404},
		{http.MethodPost, "/sessions", "MethodNotAllowed", 405},
		{http.MethodPut, "/sessions/" + survivor.ID, "MethodNotAllowed", 405},
	} {
		code, body := e.adminDo(t, tc.method, tc.path)
		var st metav1.Status
		if err := json.Unmarshal(body, &st); code != tc.code || err != nil || st.Kind != "Status" || string(st.Reason) != tc.reason || st.Code != int32(tc.code) {
			t.Errorf("%s %s: %d %s, want a %d %s Status", tc.method, tc.path, code, body, tc.code, tc.reason)
		}
	}

	wsF.stop()
	<-wsF.done
	e.waitSessions(t, "websocket", "completed", 1)
	if err := e.shutdown(30 * time.Second); err != nil { // flushes the audit log
		t.Fatal(err)
	}
	var ends []auditv1.Event
	for _, ev := range readAuditLog(t, logPath) {
		if ev.Stage == auditv1.StageResponseComplete && ev.Annotations["pfgateway.io/session-id"] == victim.ID && ev.Annotations["pfgateway.io/request-id"] == "" {
			ends = append(ends, ev)
		}
	}
	if len(ends) != 1 {
		t.Fatalf("%d session-end events for the terminated session, want 1", len(ends))
	}
	a := ends[0].Annotations
	if by := a["pfgateway.io/terminated-by"]; a["pfgateway.io/outcome"] != "terminated" || !strings.HasPrefix(by, "admin API client 127.0.0.1:") ||
		a["pfgateway.io/close-reason"] != "terminated through the admin API by "+by || ends[0].User.Username != "alice" {
		t.Errorf("session end event: user %q annotations %v", ends[0].User.Username, a)
	}
}
