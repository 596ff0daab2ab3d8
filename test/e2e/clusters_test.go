package e2e

import (
	"maps"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/devcluster/apiserver"
)

// clusterBReason is cluster b's RBAC stand-in's reason for denying alice
// pod "shared"; cluster a allows it.
const clusterBReason = `RBAC: cluster b grants "alice" nothing on pod shared`

// TestClusters runs one gateway in front of two dev clusters through
// --clusters-config: client-go and kubectl reach each through
// /clusters/{name}, byte-exact; each cluster answers its own 404s and
// SubjectAccessReviews; a reload adds a cluster and removes one while a
// session of the removed one goes on; metrics are labelled per cluster and
// only with configured names.
func TestClusters(t *testing.T) {
	const size = 1 << 20
	ce := newClustersEnv(t)
	ce.clusters["b"].APIServer.SetSubjectAccessReviewer(func(spec authorizationv1.SubjectAccessReviewSpec) (authorizationv1.SubjectAccessReviewStatus, error) {
		if ra := spec.ResourceAttributes; ra != nil && ra.Name == "shared" {
			return authorizationv1.SubjectAccessReviewStatus{Reason: clusterBReason}, nil
		}
		return authorizationv1.SubjectAccessReviewStatus{Allowed: true}, nil
	})

	t.Run("should route client-go to each cluster byte-exact", func(t *testing.T) {
		for _, tc := range []struct {
			prefix, pod string
			kind        dialerKind
		}{
			{"/clusters/a", "hash-a", dialSPDY},
			{"", "hash-a", dialSPDY}, // the first cluster also serves unprefixed paths
			{"/clusters/b", "hash-b", dialTunnel},
			{"/clusters/b", "hash-b", dialSPDY},
		} {
			f := startForward(t, dialer(t, tc.kind, ce.cfg, ce.pfURL(tc.prefix, tc.pod)), hashPort)
			c, err := f.dial()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := transfer(t, c, size, size); err != nil {
				t.Fatalf("%s %s%s: %v", tc.kind, tc.prefix, tc.pod, err)
			}
			_ = c.Close()
			f.stop()
		}
	})

	t.Run("should route kubectl by the kubeconfig pfgateway kubeconfig prints", func(t *testing.T) {
		for _, tc := range []struct {
			minor        int
			cluster, pod string
		}{{27, "a", "hash-a"}, {33, "b", "hash-b"}} {
			bin := kubectlBinary(t, tc.minor)
			ce.kubeconfig = ce.kubeconfigFor(t, tc.cluster)
			addr, run, err := ce.kubectlPortForward(t, bin, tc.pod, hashPort)
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := transfer(t, c, size, size); err != nil {
				t.Fatalf("kubectl 1.%d to cluster %s: %v", tc.minor, tc.cluster, err)
			}
			_ = c.Close()
			run.Kill()
		}
	})

	t.Run("should answer 404 per cluster", func(t *testing.T) {
		// hash-b exists in b only: a's API server answers for a.
		expectStatus(t, ce.raw(t, "POST", "/clusters/a"+pf("hash-b"), spdyUpgrade, true), 404, "NotFound", `pods "hash-b" not found`)
		expectStatus(t, ce.raw(t, "POST", pf("hash-b"), spdyUpgrade, true), 404, "NotFound", `pods "hash-b" not found`)
		r := ce.raw(t, "POST", "/clusters/nope"+pf("hash-a"), spdyUpgrade, true)
		if r.code != 404 || r.status == nil || r.status.Message != `clusters "nope" not found` || r.status.Reason != "NotFound" {
			t.Errorf("unknown cluster: %d %s", r.code, r.body)
		}
	})

	t.Run("should authorize in the target cluster", func(t *testing.T) {
		f := startForward(t, dialer(t, dialSPDY, ce.cfg, ce.pfURL("/clusters/a", "shared")), hashPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := transfer(t, c, size, size); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		f.stop()
		r := ce.raw(t, "POST", "/clusters/b"+pf("shared"), spdyUpgrade, true)
		want := `pods "shared" is forbidden: User "alice" cannot create resource "pods/portforward" in API group "" in the namespace "default": ` + clusterBReason
		if r.code != 403 || r.status == nil || r.status.Message != want {
			t.Errorf("cluster b: %d %s\nwant 403 %q", r.code, r.body, want)
		}
		for name, allowed := range map[string]bool{"a": true, "b": false} {
			var got []bool
			for _, rv := range ce.clusters[name].APIServer.SubjectAccessReviews() {
				if ra := rv.Spec.ResourceAttributes; ra != nil && ra.Name == "shared" {
					got = append(got, rv.Status.Allowed)
				}
			}
			if !slices.Equal(got, []bool{allowed}) {
				t.Errorf("cluster %s answered reviews for pod shared: %v, want one, allowed=%v", name, got, allowed)
			}
		}
	})

	t.Run("should add and remove clusters on reload; a removed cluster's session finishes", func(t *testing.T) {
		live := startForward(t, dialer(t, dialSPDY, ce.cfg, ce.pfURL("/clusters/b", "hash-b")), hashPort)
		lc, err := live.dial()
		if err != nil {
			t.Fatal(err)
		}
		ce.startDevCluster(t, "c", ce.cluster.CA)
		ce.writeClusters(t, "a", "c")
		eventually(t, 20*time.Second, "cluster c to be served and b not", func() bool {
			// Read-only calls (relayed to the cluster's API server): no
			// session is counted while waiting.
			rc := ce.raw(t, "GET", "/clusters/c/api/v1/namespaces/default/pods/nope", nil, true)
			rb := ce.raw(t, "GET", "/clusters/b/api/v1/namespaces/default/pods/nope", nil, true)
			return rc.status != nil && rc.status.Message == `pods "nope" not found` &&
				rb.status != nil && rb.status.Message == `clusters "b" not found`
		})
		if _, err := transfer(t, lc, size, size); err != nil {
			t.Fatalf("the session to removed cluster b: %v", err)
		}
		_ = lc.Close()
		live.stop()
		f := startForward(t, dialer(t, dialTunnel, ce.cfg, ce.pfURL("/clusters/c", "hash-c")), hashPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := transfer(t, c, size, size); err != nil {
			t.Fatalf("added cluster c: %v", err)
		}
		_ = c.Close()
		f.stop()
	})

	t.Run("should check bearer tokens in the authentication cluster only", func(t *testing.T) {
		token := secret(t, "bob")
		ce.cluster.APIServer.SetTokens(map[string]apiserver.TokenUser{token: {Username: "bob", Groups: []string{"ops"}}})
		bob := &rest.Config{Host: ce.cfg.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: ce.cluster.CA.CertPEM}}
		f := startForward(t, dialer(t, dialSPDY, bob, ce.pfURL("/clusters/c", "hash-c")), hashPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := transfer(t, c, size, size); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		f.stop()
		reviews := func(name string) int {
			n := 0
			for _, r := range ce.clusters[name].APIServer.Requests() {
				if r.Method == http.MethodPost && r.Path == apiserver.TokenReviewPath {
					n++
				}
			}
			return n
		}
		if a, c := reviews("a"), reviews("c"); a != 1 || c != 0 {
			t.Errorf("TokenReviews: %d in cluster a, %d in cluster c; want 1 and 0", a, c)
		}
		var users []string
		for _, r := range ce.clusters["c"].APIServer.SubjectAccessReviews() {
			users = append(users, r.Spec.User)
		}
		if !slices.Contains(users, "bob") {
			t.Errorf("cluster c reviewed %v, want bob among them", users)
		}
	})

	t.Run("should label metrics per configured cluster", func(t *testing.T) {
		want := map[string]float64{
			"cluster=a,outcome=completed": 4, // 2 client-go, kubectl 1.27, shared
			"cluster=a,outcome=rejected":  2, // the two 404s of hash-b
			"cluster=b,outcome=completed": 4, // 2 client-go, kubectl 1.33, the live session
			"cluster=c,outcome=completed": 2, // client-go as alice, and as bob with a token
		}
		var got map[string]float64
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if got = sessionsByCluster(ce.scrape(t)); maps.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sessions_total per cluster:%s\nwant:%s", formatSeries(got), formatSeries(want))
			}
		}
		m := ce.scrape(t)
		for name, mf := range m {
			if len(name) < len("pfgateway_portforward_") || name[:len("pfgateway_portforward_")] != "pfgateway_portforward_" {
				continue
			}
			for _, s := range mf.GetMetric() {
				for _, lp := range s.GetLabel() {
					if lp.GetName() == "cluster" && !slices.Contains([]string{"a", "b", "c"}, lp.GetValue()) {
						t.Errorf("%s has cluster label %q", name, lp.GetValue())
					}
				}
			}
		}
		if v := m.value("pfgateway_cluster_info", labels{"cluster": "a", "backend": "kubelet"}); v != 1 {
			t.Errorf("cluster_info{a} = %g", v)
		}
		if v := m.value("pfgateway_cluster_info", labels{"cluster": "b"}); v != 0 {
			t.Errorf("cluster_info{b} = %g after b was removed", v)
		}
		if v := m.value("pfgateway_cluster_info", labels{"cluster": "c", "backend": "kubelet"}); v != 1 {
			t.Errorf("cluster_info{c} = %g", v)
		}
		if v := m.value("pfgateway_clusters_reloads_total", labels{"result": "success"}); v != 1 {
			t.Errorf("reloads_total{success} = %g, want 1", v)
		}
	})
}

// sessionsByCluster is sessions_total summed per cluster and outcome.
func sessionsByCluster(m metrics) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m[mSessions].GetMetric() {
		var cluster, outcome string
		for _, lp := range s.GetLabel() {
			switch lp.GetName() {
			case "cluster":
				cluster = lp.GetValue()
			case "outcome":
				outcome = lp.GetValue()
			}
		}
		if v := s.GetCounter().GetValue(); v != 0 {
			out["cluster="+cluster+",outcome="+outcome] += v
		}
	}
	return out
}
