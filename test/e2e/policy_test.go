package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
)

const (
	mRejected      = "pfgateway_portforward_rejected_requests_total"
	mPolicyReloads = "pfgateway_policy_reloads_total"
	// forbiddenPort is a port of pod web where the hash server listens too,
	// so only the policy can stop a forward to it.
	forbiddenPort = 7003
)

// webPolicy lets alice reach pods labelled app=web in namespace default on
// ports 7000 and 7002 (written as a range), nothing else.
const webPolicy = `apiVersion: pfgateway.io/v1alpha1
kind: Policy
rules:
- name: web-team
  users: [alice]
  namespaces: [default]
  podSelector: {matchLabels: {app: web}}
  ports: [7000, "7002-7002"]
`

// policyEnv is a gateway with --policy-file=webPolicy and pods that the
// policy allows (web), denies by labels (db, and hash, unlabelled) and by
// namespace (other/web); all forward to the hash server.
func policyEnv(t *testing.T) (*env, string) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, path, webPolicy)
	e := newEnv(t, func(o *options.Options) {
		o.Policy.File = path
		o.Streams.MetricsPorts = []int{hashPort, forbiddenPort}
	})
	ports := map[int32]string{}
	for _, p := range hashPorts {
		ports[int32(p)] = e.hash.Addr()
	}
	e.addPod(devcluster.Pod{Name: "web", Labels: map[string]string{"app": "web"}, Ports: ports})
	e.addPod(devcluster.Pod{Name: "db", Labels: map[string]string{"app": "db"}, Ports: ports})
	e.addPod(devcluster.Pod{Namespace: "other", Name: "web", Labels: map[string]string{"app": "web"}, Ports: ports})
	return e, path
}

// writePolicy replaces the file in one rename, as a ConfigMap update does.
func writePolicy(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// forbiddenMsg is the API server's wording for a refused pods/portforward,
// with the policy's reason.
func forbiddenMsg(ns, pod, reason string) string {
	return fmt.Sprintf(`pods %q is forbidden: User "alice" cannot create resource "pods/portforward" in API group "" in the namespace %q: %s`, pod, ns, reason)
}

func portDenial(port int) string {
	return fmt.Sprintf("pfgateway policy forbids port %d on pod default/web for user alice (no rule allows it)", port)
}

// TestPolicy runs the gateway policy end to end: requests it denies get
// the API server's 403 with the policy's reason; allowed pods and ports
// forward byte-exact over every protocol; a forbidden port inside a SPDY or
// tunnel session is refused on its own error stream while the session's
// other forwards go on; an edit of the file applies to new sessions.
func TestPolicy(t *testing.T) {
	logs := captureLogs(t)
	e, path := policyEnv(t)

	t.Run("should refuse with 403 what no rule allows", func(t *testing.T) {
		tests := []struct {
			name, method, path string
			header             http.Header
			msg                string
		}{
			{"pod labels", "POST", pf("db"), spdyUpgrade, forbiddenMsg("default", "db",
				`pfgateway policy: no rule allows cluster "default", namespace "default", pod labels app=db for this user`)},
			{"unlabelled pod", "POST", pf("hash"), spdyUpgrade, forbiddenMsg("default", "hash",
				`pfgateway policy: no rule allows cluster "default", namespace "default", pod labels <none> for this user`)},
			{"namespace", "GET", "/api/v1/namespaces/other/pods/web/portforward?ports=7000", legacyUpgrade, forbiddenMsg("other", "web",
				`pfgateway policy: no rule allows cluster "default", namespace "other", pod labels app=web for this user`)},
			{"legacy WebSocket port in the query", "GET", pf("web") + "?ports=7000&ports=" + strconv.Itoa(forbiddenPort), legacyUpgrade,
				forbiddenMsg("default", "web", portDenial(forbiddenPort))},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.raw(t, tt.method, tt.path, tt.header, true)
				expectStatus(t, r, 403, metav1.StatusReasonForbidden, tt.msg)
				if r.status != nil && r.status.Message != tt.msg {
					t.Errorf("message\n%q, want exactly\n%q", r.status.Message, tt.msg)
				}
			})
		}
		if got := e.scrape(t).value(mRejected, labels{"code": "403"}); got != float64(len(tests)) {
			t.Errorf("%s{code=403} = %v, want %d", mRejected, got, len(tests))
		}
		// client-go shows the same message.
		_, _, err := dialer(t, dialSPDY, e.cfg, e.pfURL("", "db")).Dial(portforward.PortForwardProtocolV1Name)
		if err == nil || !strings.Contains(err.Error(), "pod labels app=db for this user") {
			t.Errorf("client-go dial error %v, want the policy's reason", err)
		}
	})

	t.Run("should forward allowed pods and ports byte-exact", func(t *testing.T) {
		for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
			f := startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "web")), hashPort, 7002)
			for _, local := range f.locals {
				c, err := net.Dial("tcp", local)
				if err != nil {
					t.Fatal(err)
				}
				transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
				_ = c.Close()
			}
			f.stop()
		}
		c, _, err := e.dialLegacy("web", hashPort, v4Binary, nil)
		if err != nil {
			t.Fatalf("legacy WebSocket to an allowed port: %v", err)
		}
		transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
		_ = c.Close()
	})

	t.Run("should refuse a forbidden port on its own stream and keep the session", func(t *testing.T) {
		for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
			t.Run(string(kind), func(t *testing.T) { forbiddenPortInSession(t, e, kind) })
		}
		e.waitIdle(t)
		got := nonZero(e.scrape(t).series(mForwards))
		for _, protocol := range []string{"spdy", "websocket"} {
			k := fmt.Sprintf("outcome=refused,port=%d,protocol=%s", forbiddenPort, protocol)
			if got[k] != 1 {
				t.Errorf("%s{%s} = %v, want 1; all:%s", mForwards, k, got[k], formatSeries(got))
			}
		}
		var refused []forwardLog
		for _, l := range forwardLogs(logs.String()) {
			if l.outcome == "refused" {
				refused = append(refused, l)
			}
		}
		if len(refused) != 2 || refused[0].port != forbiddenPort || refused[0].message != portDenial(forbiddenPort) {
			t.Errorf("refused forwarded-connection log lines: %+v", refused)
		}
	})

	t.Run("client-go ends its own session on the refusal message", func(t *testing.T) {
		// Documented in the README: client-go (and so kubectl) closes the
		// whole connection on any error-stream text; the gateway does not.
		f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "web")), forbiddenPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, c)
		_ = c.Close()
		select {
		case err := <-f.done:
			if !errors.Is(err, portforward.ErrLostConnectionToPod) {
				t.Errorf("ForwardPorts ended with %v, want ErrLostConnectionToPod", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("client-go kept its session after the refusal (has client-go changed? update the README)")
		}
	})

	t.Run("should apply an edited policy to new sessions without restart", func(t *testing.T) {
		before := e.scrape(t)
		okBefore := before.value(mPolicyReloads, labels{"result": "success"})
		failBefore := before.value(mPolicyReloads, labels{"result": "failure"})
		writePolicy(t, path, strings.Replace(webPolicy, `"7002-7002"`, `"7002-7003"`, 1))
		var c *legacyConn
		eventually(t, 20*time.Second, "the edited policy to allow port 7003", func() bool {
			var err error
			c, _, err = e.dialLegacy("web", forbiddenPort, v4Binary, nil)
			return err == nil
		})
		transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
		_ = c.Close()
		if got := e.scrape(t).value(mPolicyReloads, labels{"result": "success"}); got != okBefore+1 {
			t.Errorf("%s{result=success} = %v, want %v", mPolicyReloads, got, okBefore+1)
		}

		// A bad edit is counted and keeps the policy in force.
		writePolicy(t, path, webPolicy+"  namespace: [typo]\n")
		eventually(t, 20*time.Second, mPolicyReloads+`{result="failure"} to grow`, func() bool {
			return e.scrape(t).value(mPolicyReloads, labels{"result": "failure"}) == failBefore+1
		})
		c, _, err := e.dialLegacy("web", forbiddenPort, v4Binary, nil)
		if err != nil {
			t.Fatalf("the bad edit lifted the policy in force: %v", err)
		}
		transfer(t, c, 1<<10, 1<<10) //nolint:errcheck // reported by transfer
		_ = c.Close()
		r := e.raw(t, "POST", pf("db"), spdyUpgrade, true)
		expectStatus(t, r, 403, metav1.StatusReasonForbidden, "pod labels app=db for this user")
	})
}

// forbiddenPortInSession opens, in one SPDY or tunnel session (a raw
// client-go connection, which unlike client-go's PortForwarder does not
// close the session on error text), an allowed forward, then a forbidden
// one, then uses the first and opens another allowed one.
func forbiddenPortInSession(t *testing.T, e *env, kind dialerKind) {
	conn, _, err := dialer(t, kind, e.cfg, e.pfURL("", "web")).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	allowed := openPair(t, conn, hashPort, 0)
	refused := openPair(t, conn, forbiddenPort, 1)
	select {
	case r := <-refused.errText:
		if r.text != portDenial(forbiddenPort) {
			t.Errorf("error stream of the forbidden port: %q (%v), want %q", r.text, r.err, portDenial(forbiddenPort))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no message on the forbidden port's error stream")
	}
	if n, err := refused.data.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the forbidden port's data stream gave %d bytes, %v; want it ended", n, err)
	}

	// The forward opened before the refusal, and one opened after it.
	transfer(t, allowed.conn(), 2<<20, 2<<20) //nolint:errcheck // reported by transfer
	later := openPair(t, conn, 7002, 2)
	transfer(t, later.conn(), 1<<20, 1<<20) //nolint:errcheck // reported by transfer
	for _, p := range []*pair{allowed, later} {
		select {
		case r := <-p.errText:
			if r.text != "" || r.err != nil {
				t.Errorf("allowed forward's error stream: %q, %v", r.text, r.err)
			}
		case <-time.After(20 * time.Second):
			t.Error("an allowed forward's error stream did not end")
		}
	}
}

// pair is one forwarded connection opened by hand, as client-go's
// handleConnection does: error stream created and half-closed, then read
// to its end; then the data stream.
type pair struct {
	data    httpstream.Stream
	errText chan errResult
}

type errResult struct {
	text string
	err  error
}

func openPair(t *testing.T, conn httpstream.Connection, port, requestID int) *pair {
	t.Helper()
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(requestID))
	es, err := conn.CreateStream(h)
	if err != nil {
		t.Fatalf("error stream for port %d: %v", port, err)
	}
	_ = es.Close()
	p := &pair{errText: make(chan errResult, 1)}
	go func() {
		b, err := io.ReadAll(es)
		p.errText <- errResult{string(b), err}
	}()
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	if p.data, err = conn.CreateStream(h); err != nil {
		t.Fatalf("data stream for port %d: %v", port, err)
	}
	return p
}

// conn is the data stream as a net.Conn for transfer: CloseWrite is the
// stream's half-close, Close resets it.
func (p *pair) conn() net.Conn { return streamConn{p.data} }

type streamConn struct{ s httpstream.Stream }

func (c streamConn) Read(b []byte) (int, error)       { return c.s.Read(b) }
func (c streamConn) Write(b []byte) (int, error)      { return c.s.Write(b) }
func (c streamConn) CloseWrite() error                { return c.s.Close() }
func (c streamConn) Close() error                     { return c.s.Reset() }
func (c streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c streamConn) SetDeadline(time.Time) error      { return nil }
func (c streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c streamConn) SetWriteDeadline(time.Time) error { return nil }
