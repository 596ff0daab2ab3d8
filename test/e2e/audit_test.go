package e2e

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
)

const mAuditEvents = "pfgateway_audit_events_total"

// auditWebhook is an in-process HTTPS audit webhook; while hanging, it
// holds every request until release.
type auditWebhook struct {
	srv        *httptest.Server
	kubeconfig string

	mu      sync.Mutex
	events  []auditv1.Event
	hang    bool
	release chan struct{}
	once    sync.Once
}

func startAuditWebhook(t *testing.T, hang bool) *auditWebhook {
	t.Helper()
	w := &auditWebhook{hang: hang, release: make(chan struct{})}
	w.srv = httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.hang {
			select {
			case <-w.release:
			case <-r.Context().Done():
				return
			}
		}
		var list auditv1.EventList
		if err := json.NewDecoder(r.Body).Decode(&list); err != nil || list.APIVersion != "audit.k8s.io/v1" || list.Kind != "EventList" {
			http.Error(rw, fmt.Sprintf("not an audit.k8s.io/v1 EventList: %v %s %s", err, list.APIVersion, list.Kind), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.events = append(w.events, list.Items...)
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close) // runs after the gateway has stopped
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.srv.Certificate().Raw})
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["audit"] = &clientcmdapi.Cluster{Server: w.srv.URL + "/audit", CertificateAuthorityData: caPEM}
	cfg.AuthInfos["gateway"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["audit"] = &clientcmdapi.Context{Cluster: "audit", AuthInfo: "gateway"}
	cfg.CurrentContext = "audit"
	w.kubeconfig = filepath.Join(t.TempDir(), "audit-webhook.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, w.kubeconfig); err != nil {
		t.Fatal(err)
	}
	return w
}

// unblock lets held and later requests through.
func (w *auditWebhook) unblock() { w.once.Do(func() { close(w.release) }) }

func (w *auditWebhook) received() []auditv1.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// readAuditLog decodes each line of the audit log as an audit.k8s.io/v1 Event.
func readAuditLog(t *testing.T, path string) []auditv1.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditv1.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev auditv1.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.APIVersion != "audit.k8s.io/v1" || ev.Kind != "Event" {
			t.Fatalf("audit log line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

// gatewayMetrics reads the gateway's registry directly (it outlives the
// admin listener, so it can be read after shutdown).
func (e *env) gatewayMetrics(t *testing.T) metrics {
	t.Helper()
	mfs, err := e.gw.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := metrics{}
	for _, mf := range mfs {
		m[mf.GetName()] = mf
	}
	return m
}

func auditKey(ev auditv1.Event) string { return string(ev.AuditID) + "/" + string(ev.Stage) }

// TestAuditRecords runs one client-go SPDY session with two forwarded
// connections of known sizes and two refused requests, then reads the audit
// log and the webhook's EventLists back and checks each event field by field.
func TestAuditRecords(t *testing.T) {
	wh := startAuditWebhook(t, false)
	logPath := filepath.Join(t.TempDir(), "audit", "audit.log")
	e := newEnv(t, func(o *options.Options) {
		o.Audit.LogPath, o.Audit.WebhookConfigFile, o.Audit.WebhookInitialBackoff = logPath, wh.kubeconfig, 50*time.Millisecond
	})

	f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort, 7002)
	sizes := [][2]int64{{300 << 10, 100 << 10}, {0, 1 << 20}}
	for i, s := range sizes {
		c, err := net.Dial("tcp", f.locals[i])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := transfer(t, c, s[0], s[1]); err != nil {
			t.FailNow()
		}
		_ = c.Close()
	}
	f.stop()
	<-f.done
	e.waitIdle(t)

	noCert := e.raw(t, http.MethodPost, pf("hash"), spdyUpgrade, false)
	expectStatus(t, noCert, 401, "Unauthorized", "Unauthorized")
	unknown := e.raw(t, http.MethodPost, pf("nope"), spdyUpgrade, true)
	expectStatus(t, unknown, 404, "NotFound", `pods "nope" not found`)

	if err := e.shutdown(30 * time.Second); err != nil { // flushes the sinks
		t.Fatal(err)
	}
	events := readAuditLog(t, logPath)
	if len(events) != 6 {
		t.Fatalf("%d audit events, want 6 (session start and end, 2 connections, 2 refused):\n%+v", len(events), events)
	}
	byStage := func(stage auditv1.Stage, code int32) []auditv1.Event {
		var out []auditv1.Event
		for _, ev := range events {
			if ev.Stage == stage && ev.ResponseStatus != nil && ev.ResponseStatus.Code == code {
				out = append(out, ev)
			}
		}
		return out
	}
	started, completed := byStage(auditv1.StageResponseStarted, 101), byStage(auditv1.StageResponseComplete, 101)
	if len(started) != 1 || len(completed) != 3 {
		t.Fatalf("%d session-start and %d 101-complete events, want 1 and 3", len(started), len(completed))
	}
	start := started[0]
	sessionID := start.Annotations["pfgateway.io/session-id"]
	common := func(name string, ev auditv1.Event, user, pod string) {
		t.Helper()
		if ev.Level != auditv1.LevelMetadata || ev.Verb != "create" || ev.User.Username != user ||
			ev.ObjectRef == nil || ev.ObjectRef.Resource != "pods" || ev.ObjectRef.Subresource != "portforward" ||
			ev.ObjectRef.Namespace != "default" || ev.ObjectRef.Name != pod ||
			ev.RequestURI != "/api/v1/namespaces/default/pods/"+pod+"/portforward" ||
			!slices.Equal(ev.SourceIPs, []string{"127.0.0.1"}) || ev.Annotations["pfgateway.io/cluster"] != "default" ||
			ev.RequestReceivedTimestamp.IsZero() || ev.StageTimestamp.Before(&ev.RequestReceivedTimestamp) {
			t.Errorf("%s event: %+v (objectRef %+v)", name, ev, ev.ObjectRef)
		}
		if user == "alice" && (!slices.Equal(ev.User.Groups, []string{"devs", "system:authenticated"}) || ev.UserAgent == "") {
			t.Errorf("%s event: groups %v userAgent %q", name, ev.User.Groups, ev.UserAgent)
		}
	}
	common("session start", start, "alice", "hash")
	if sessionID == "" || start.Annotations["pfgateway.io/protocol"] != "spdy" || start.Annotations["pfgateway.io/node"] != devcluster.NodeName {
		t.Errorf("session start annotations %v", start.Annotations)
	}

	var end auditv1.Event
	var conns []auditv1.Event
	for _, ev := range completed {
		if ev.AuditID == start.AuditID {
			end = ev
		} else {
			conns = append(conns, ev)
		}
	}
	common("session end", end, "alice", "hash")
	a := end.Annotations
	up, _ := strconv.ParseInt(a["pfgateway.io/bytes-up"], 10, 64)
	down, _ := strconv.ParseInt(a["pfgateway.io/bytes-down"], 10, 64)
	// The session's bytes are SPDY frames: the payloads plus framing.
	if a["pfgateway.io/session-id"] != sessionID || a["pfgateway.io/outcome"] != "completed" || a["pfgateway.io/node"] != devcluster.NodeName ||
		up < 300<<10+2*24 || down < 1100<<10+2*32 || a["pfgateway.io/duration"] == "" {
		t.Errorf("session end annotations %v", a)
	}

	if len(conns) != 2 {
		t.Fatalf("%d forwarded-connection events, want 2", len(conns))
	}
	slices.SortFunc(conns, func(x, y auditv1.Event) int {
		return strings.Compare(x.Annotations["pfgateway.io/request-id"], y.Annotations["pfgateway.io/request-id"])
	})
	for i, c := range conns {
		common(fmt.Sprintf("connection %d", i), c, "alice", "hash")
		want := map[string]string{
			"pfgateway.io/session-id": sessionID, "pfgateway.io/protocol": "spdy", "pfgateway.io/node": devcluster.NodeName,
			"pfgateway.io/port": strconv.Itoa([]int{hashPort, 7002}[i]), "pfgateway.io/request-id": strconv.Itoa(i),
			"pfgateway.io/bytes-up": strconv.FormatInt(sizes[i][0]+24, 10), "pfgateway.io/bytes-down": strconv.FormatInt(sizes[i][1]+32, 10),
			"pfgateway.io/outcome": "client_closed",
		}
		for k, v := range want {
			if c.Annotations[k] != v {
				t.Errorf("connection %d: %s = %q, want %q", i, k, c.Annotations[k], v)
			}
		}
		if c.AuditID == start.AuditID || c.ResponseStatus.Status != "Success" {
			t.Errorf("connection %d: auditID %s (session's %s), status %+v", i, c.AuditID, start.AuditID, c.ResponseStatus)
		}
	}
	if conns[0].AuditID == conns[1].AuditID {
		t.Error("the two connections share an auditID")
	}

	refused401 := byStage(auditv1.StageResponseComplete, 401)
	if len(refused401) != 1 {
		t.Fatalf("%d 401 events, want 1", len(refused401))
	}
	common("401", refused401[0], "", "hash")
	if st := refused401[0].ResponseStatus; st.Reason != "Unauthorized" || st.Message != "Unauthorized" || len(refused401[0].User.Groups) != 0 {
		t.Errorf("401 event status %+v user %+v", st, refused401[0].User)
	}
	refused404 := byStage(auditv1.StageResponseComplete, 404)
	if len(refused404) != 1 {
		t.Fatalf("%d 404 events, want 1", len(refused404))
	}
	common("404", refused404[0], "alice", "nope")
	if st, a := refused404[0].ResponseStatus, refused404[0].Annotations; st.Reason != "NotFound" || st.Message != `pods "nope" not found` ||
		a["pfgateway.io/outcome"] != "rejected" || a["pfgateway.io/session-id"] == "" {
		t.Errorf("404 event status %+v annotations %v", st, a)
	}

	// The webhook received the same events.
	got, want := map[string]bool{}, map[string]bool{}
	for _, ev := range wh.received() {
		got[auditKey(ev)] = true
	}
	for _, ev := range events {
		want[auditKey(ev)] = true
	}
	if len(wh.received()) != len(events) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("webhook received %v, the log has %v", got, want)
	}
	m := e.gatewayMetrics(t)
	for _, sink := range []string{"log", "webhook"} {
		if w, d, f := m.value(mAuditEvents, labels{"sink": sink, "result": "written"}), m.value(mAuditEvents, labels{"sink": sink, "result": "dropped"}),
			m.value(mAuditEvents, labels{"sink": sink, "result": "failed"}); w != 6 || d != 0 || f != 0 {
			t.Errorf("%s{sink=%s}: written %v dropped %v failed %v, want 6 0 0", mAuditEvents, sink, w, d, f)
		}
	}
}

// TestAuditProtocols: the WebSocket tunnel (hijacked by gorilla through the
// audit filter's writer) and the legacy WebSocket protocol are audited too;
// legacy sessions name their ports.
func TestAuditProtocols(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "audit.log")
	e := newEnv(t, func(o *options.Options) { o.Audit.LogPath = logPath })
	f := startForward(t, dialer(t, dialTunnel, e.cfg, e.pfURL("", "hash")), hashPort)
	c, err := f.dial()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := transfer(t, c, 4096, 8192); err != nil {
		t.FailNow()
	}
	_ = c.Close()
	f.stop()
	<-f.done
	lc, _, err := e.dialLegacy("hash", hashPort, v4Binary, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = transfer(t, lc, 1000, 2000)
	_ = lc.Close()
	if err != nil {
		t.FailNow()
	}
	e.waitIdle(t)
	if err := e.shutdown(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range readAuditLog(t, logPath) {
		a := ev.Annotations
		got = append(got, fmt.Sprintf("%s %d %s ports=%s port=%s up=%s down=%s", ev.Stage, ev.ResponseStatus.Code,
			a["pfgateway.io/protocol"], a["pfgateway.io/ports"], a["pfgateway.io/port"], a["pfgateway.io/bytes-up"], a["pfgateway.io/bytes-down"]))
	}
	// The legacy protocol is spliced opaquely: no per-connection event, and
	// its session bytes are payload plus WebSocket framing.
	slices.Sort(got)
	if len(got) != 5 || !strings.HasPrefix(got[0], "ResponseComplete 101 websocket ports= port= up=") ||
		got[1] != "ResponseComplete 101 websocket ports= port=7000 up=4120 down=8224" ||
		!strings.HasPrefix(got[2], "ResponseComplete 101 websocket_legacy ports=7000 port= up=") ||
		got[3] != "ResponseStarted 101 websocket ports= port= up= down=" ||
		got[4] != "ResponseStarted 101 websocket_legacy ports=7000 port= up= down=" {
		t.Errorf("events:\n%s", strings.Join(got, "\n"))
	}
}
