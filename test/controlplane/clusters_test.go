package controlplane

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/pfgateway/pfgateway/devcluster"
)

// The kube-apiserver's audit: metadata of every pods/portforward request,
// nothing else (startAPIServer passes both files).
const (
	auditPolicyFile = "audit-policy.yaml"
	auditLogFile    = "audit.log"
	auditPolicy     = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources: [{group: "", resources: ["pods/portforward"]}]
- level: None
`
)

// clustersFile writes a --clusters-config naming the one real cluster
// twice: "direct" through its kubelet, "upstream" through its API server.
func (c *controlPlane) clustersFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "clusters.yaml")
	data := fmt.Sprintf("clusters:\n- name: direct\n  kubeconfig: %s\n  backend: kubelet\n- name: upstream\n  kubeconfig: %s\n  backend: apiserver\n",
		c.gatewayKubeconfig, c.gatewayKubeconfig)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// portForwardAudit returns the kube-apiserver's audit events for the test
// pod's portforward subresource: ResponseStarted (an upgraded request, until
// it ends) and ResponseComplete.
func (c *controlPlane) portForwardAudit(t *testing.T) []auditv1.Event {
	t.Helper()
	f, err := os.Open(c.path(auditLogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditv1.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev auditv1.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if r := ev.ObjectRef; ev.Stage != auditv1.StageRequestReceived && r != nil && r.Subresource == "portforward" && r.Name == podName && r.Namespace == namespace {
			out = append(out, ev)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitAudit waits (the audit log is written asynchronously) for an event
// of the gateway impersonating user with userAgent containing ua, verb
// create and the given response code.
func (c *controlPlane) waitAudit(t *testing.T, user, ua string, code int32) {
	t.Helper()
	c.waitAuditVerb(t, user, ua, "create", code)
}

// waitAuditVerb is waitAudit for another verb.
func (c *controlPlane) waitAuditVerb(t *testing.T, user, ua, verb string, code int32) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var seen []string
		for _, ev := range c.portForwardAudit(t) {
			imp := ""
			if ev.ImpersonatedUser != nil {
				imp = ev.ImpersonatedUser.Username
			}
			got := ev.ResponseStatus != nil && ev.ResponseStatus.Code == code
			if ev.User.Username == gatewayUser && imp == user && ev.Verb == verb && strings.Contains(ev.UserAgent, ua) && got &&
				slices.Contains(ev.ImpersonatedUser.Groups, "system:authenticated") {
				return
			}
			seen = append(seen, fmt.Sprintf("{user %s as %q verb %s ua %q code %v}", ev.User.Username, imp, ev.Verb, ev.UserAgent, ev.ResponseStatus))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event of %s impersonating %q (user agent %q, code %d) on pods/portforward; seen: %v", gatewayUser, user, ua, code, seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClustersAPIServerBackend serves the real cluster twice from one
// --clusters-config: "direct" (kubelet backend) and "upstream" (apiserver
// backend: the gateway forwards the portforward to the real kube-apiserver,
// impersonating the caller, and the API server reaches the test kubelet).
// kubectl 1.27 (SPDY) and 1.33 (WebSocket, unwrapped by the gateway) move
// 4 MiB each way byte-exact; the API server's own audit shows the caller as
// the impersonated user of each portforward.
func TestClustersAPIServerBackend(t *testing.T) {
	c := needControlPlane(t)
	g := c.startGateway(t, "--clusters-config="+c.clustersFile(t))
	alice := c.user(t, userAllowed, "devs")

	for i, tc := range []struct {
		minor   int
		cluster string
	}{{27, "upstream"}, {33, "upstream"}, {27, "direct"}, {33, "direct"}} {
		t.Run(fmt.Sprintf("kubectl 1.%d via %s", tc.minor, tc.cluster), func(t *testing.T) {
			bin := kubectlBinary(t, tc.minor)
			addr := kubectlPortForward(t, bin, c.kubeconfig(t, g.addr+"/clusters/"+tc.cluster, alice))
			exchangeVia(t, addr, uint64(700+i))
			if tc.cluster == "upstream" {
				c.waitAudit(t, userAllowed, fmt.Sprintf("v1.%d", tc.minor), http.StatusSwitchingProtocols)
			}
		})
	}

	t.Run("metrics per cluster and protocol", func(t *testing.T) {
		// kubectl 1.33 spoke WebSocket to the gateway, 1.27 SPDY; each
		// cluster got one upgrade of each.
		body := getBody(t, "http://"+g.gw.AdminAddr()+"/metrics")
		for _, cl := range []string{"direct", "upstream"} {
			for _, p := range []string{"spdy", "websocket"} {
				want := fmt.Sprintf("pfgateway_portforward_backend_upgrade_duration_seconds_count{cluster=%q,protocol=%q} 1\n", cl, p)
				if !strings.Contains(body, want) {
					t.Errorf("metrics lack %q", want)
				}
			}
		}
		if want := `pfgateway_cluster_info{backend="apiserver",cluster="upstream"} 1`; !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	})

	t.Run("unknown cluster", func(t *testing.T) {
		code, st := rawStatus(t, c.restConfig(g.addr+"/clusters/nope", alice))
		wantStatus(t, "gateway", code, st, http.StatusNotFound, metav1.StatusReasonNotFound, `clusters "nope" not found`)
	})
}

// TestClustersUpstreamRBAC: with the gateway's own authorization off
// (AlwaysAllow), bob, whom RBAC gives nothing, still forwards through the
// kubelet backend, but the apiserver backend hands the decision to the real
// API server, which refuses him in its own words, passed through, and
// audits the refusal as bob.
func TestClustersUpstreamRBAC(t *testing.T) {
	c := needControlPlane(t)
	g := c.startGateway(t, "--clusters-config="+c.clustersFile(t), "--authorization-mode=AlwaysAllow")
	bob := c.user(t, userDenied, "devs")

	addr, err := forwardClientGo(t, c.restConfig(g.addr+"/clusters/direct", bob))
	if err != nil {
		t.Fatalf("bob via the kubelet backend: %v", err)
	}
	exchangeVia(t, addr, 800)

	_, err = forwardClientGo(t, c.restConfig(g.addr+"/clusters/upstream", bob))
	if want := "error upgrading connection: unable to upgrade connection: " + forbiddenPortForward(userDenied); err == nil || err.Error() != want {
		t.Errorf("bob via the apiserver backend: got %v, want %q", err, want)
	}
	c.waitAudit(t, userDenied, "", http.StatusForbidden)
}

// getBody GETs url and returns its body; it wants 200.
func getBody(t *testing.T, url string) string {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestClustersUpstreamLegacyWebSocket: a legacy WebSocket client (the
// Python, JavaScript and C# clients' v4.channel.k8s.io) through the
// apiserver backend: the gateway sends the upstream a GET with ports=, the
// real API server reaches the kubelet, and the kubelet's port prefix comes
// back on both channels of the port; the upstream audits the caller.
func TestClustersUpstreamLegacyWebSocket(t *testing.T) {
	c := needControlPlane(t)
	g := c.startGateway(t, "--clusters-config="+c.clustersFile(t))
	tc := devcluster.ClientTLS(c.ca, c.user(t, userAllowed, "devs"))
	tc.NextProtos = []string{"http/1.1"}
	d := gwebsocket.Dialer{TLSClientConfig: tc, Subprotocols: []string{"v4.channel.k8s.io"}, HandshakeTimeout: 30 * time.Second}
	u := "wss" + strings.TrimPrefix(g.addr, "https") + "/clusters/upstream" + pfPath + "?ports=" + strconv.Itoa(podPort)
	ws, resp, err := d.Dial(u, nil)
	if err != nil {
		t.Fatalf("legacy WebSocket through the apiserver backend: %v (response %v)", err, resp)
	}
	defer ws.Close()
	if ws.Subprotocol() != "v4.channel.k8s.io" {
		t.Errorf("subprotocol %q", ws.Subprotocol())
	}
	// Channel 0 (data) and 1 (error) each start with the port, 2 bytes
	// little endian, written by the kubelet.
	want := map[byte]bool{0: true, 1: true}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(want) > 0 {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("reading the port prefixes (still expecting channels %v): %v", want, err)
		}
		if len(msg) != 3 || !want[msg[0]] || msg[1] != byte(podPort&0xff) || msg[2] != byte(podPort>>8) {
			t.Fatalf("unexpected message %v, want [channel %d %d] for channels %v", msg, podPort&0xff, podPort>>8, want)
		}
		delete(want, msg[0])
	}
	c.waitAuditVerb(t, userAllowed, "", "get", http.StatusSwitchingProtocols)
}
