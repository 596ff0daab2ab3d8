package clusters

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"github.com/pfgateway/pfgateway/upgrade"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/resolve"
	"github.com/pfgateway/pfgateway/router"
)

// testSettings build every cluster against a closed port: nothing is
// dialed unless the manager runs.
func testSettings() Settings {
	return Settings{
		QPS: 5, Burst: 10,
		NewAuthorizer: func(kubernetes.Interface) (authorizer.Authorizer, error) {
			return authorizerfactory.NewAlwaysAllowAuthorizer(), nil
		},
		RESTConfig: func(cl Cluster) (*rest.Config, error) {
			return &rest.Config{Host: "https://127.0.0.1:1/prefix-" + cl.Name, BearerToken: "gateway-token"}, nil
		},
		// The --kubelet-* identity (never used: nothing is dialed).
		Kubelet: upgrade.BackendOptions{TLS: &tls.Config{Certificates: []tls.Certificate{{}}, RootCAs: x509.NewCertPool()}},
	}
}

// A kubelet cluster needs a client certificate and a CA, its own or the
// gateway's; an API-server cluster needs neither.
func TestKubeletIdentity(t *testing.T) {
	gateway := upgrade.BackendOptions{TLS: &tls.Config{Certificates: []tls.Certificate{{}}, RootCAs: x509.NewCertPool()}}
	noCert := upgrade.BackendOptions{TLS: &tls.Config{RootCAs: x509.NewCertPool()}}
	noCA := upgrade.BackendOptions{TLS: &tls.Config{Certificates: []tls.Certificate{{}}}}
	for _, tc := range []struct {
		name string
		cl   Cluster
		base upgrade.BackendOptions
		want string
	}{
		{name: "the gateway's", base: gateway},
		{name: "its own", cl: Cluster{KubeletClientCertificate: "c", KubeletClientKey: "k", KubeletCertificateAuthority: "ca"}, base: upgrade.BackendOptions{}},
		{name: "no certificate", base: noCert, want: "backend kubelet needs a kubelet client certificate"},
		{name: "no CA", base: noCA, want: "backend kubelet needs the kubelet CA"},
		{name: "own certificate, no CA", cl: Cluster{KubeletClientCertificate: "c", KubeletClientKey: "k"}, base: upgrade.BackendOptions{}, want: "backend kubelet needs the kubelet CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := kubeletIdentity(tc.cl, tc.base)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.want)) {
				t.Errorf("kubeletIdentity: %v, want %q", err, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	// Written beside and renamed, as a ConfigMap update swaps the file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestManagerReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusters.yaml")
	writeFile(t, path, "clusters:\n- {name: a, inCluster: true}\n- {name: b, inCluster: true, backend: apiserver}\n")
	reg := prometheus.NewRegistry()
	m, err := NewManager(path, testSettings(), reg)
	if err != nil {
		t.Fatal(err)
	}
	reloads := func(result string) float64 {
		return testutil.ToFloat64(m.metrics.file.Reloads(result))
	}
	wantNames := func(want ...string) {
		t.Helper()
		if got := m.Names(); !reflect.DeepEqual(got, want) {
			t.Fatalf("names %v, want %v", got, want)
		}
		for _, n := range want {
			if !m.Known(n) {
				t.Fatalf("%s not known", n)
			}
		}
		if got := testutil.CollectAndCount(m.metrics.info); got != len(want) {
			t.Errorf("cluster_info has %d series, want %d", got, len(want))
		}
	}
	wantNames("a", "b")
	if _, ok := m.Runtime("a"); !ok || m.Backend("a") != nil || m.Backend("b") == nil || m.Backend("z") != nil {
		t.Fatalf("backends: a %v, b %v", m.Backend("a"), m.Backend("b"))
	}
	if r, _ := m.Resolver("a"); reflect.TypeOf(r) != reflect.TypeOf(&resolve.Resolver{}) {
		t.Errorf("kubelet cluster resolver is %T", r)
	}
	if m.Config().AuthenticationCluster != "a" {
		t.Errorf("authentication cluster %q, want the first", m.Config().AuthenticationCluster)
	}
	ra, _ := m.Runtime("a")
	rb, _ := m.Runtime("b")

	t.Run("should add a cluster and keep the others' runtimes", func(t *testing.T) {
		writeFile(t, path, "clusters:\n- {name: a, inCluster: true}\n- {name: b, inCluster: true, backend: apiserver}\n- {name: c, inCluster: true}\n")
		m.Reload()
		wantNames("a", "b", "c")
		if r, _ := m.Runtime("a"); r != ra {
			t.Error("cluster a's runtime was rebuilt although its entry did not change")
		}
		if reloads(ResultSuccess) != 1 {
			t.Errorf("success reloads %v, want 1", reloads(ResultSuccess))
		}
	})
	t.Run("should keep the clusters in force on a bad edit, counted once", func(t *testing.T) {
		writeFile(t, path, "clusters:\n- {name: a, inCluster: true}\n- {name: a, inCluster: true}\n")
		m.Reload()
		m.Reload()
		wantNames("a", "b", "c")
		if reloads(ResultFailure) != 1 {
			t.Errorf("failed reloads %v, want 1", reloads(ResultFailure))
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		m.Reload()
		wantNames("a", "b", "c")
		if reloads(ResultFailure) != 2 {
			t.Errorf("failed reloads after deleting the file %v, want 2", reloads(ResultFailure))
		}
	})
	t.Run("should refuse to change the authentication cluster", func(t *testing.T) {
		writeFile(t, path, "authenticationCluster: c\nclusters:\n- {name: a, inCluster: true}\n- {name: c, inCluster: true}\n")
		m.Reload()
		writeFile(t, path, "clusters:\n- {name: a, inCluster: true, backend: apiserver}\n")
		m.Reload()
		wantNames("a", "b", "c")
		if reloads(ResultFailure) != 4 {
			t.Errorf("failed reloads %v, want 4", reloads(ResultFailure))
		}
	})
	t.Run("should remove a cluster and stop its runtime", func(t *testing.T) {
		writeFile(t, path, "clusters:\n- {name: a, inCluster: true}\n- {name: c, inCluster: true}\n")
		m.Reload()
		wantNames("a", "c")
		if m.Known("b") {
			t.Error("b still known")
		}
		select {
		case <-rb.stopCh:
		default:
			t.Error("b's runtime was not stopped")
		}
		ctx := router.WithCluster(context.Background(), "b")
		if _, _, err := m.Authorize(ctx, &authorizer.AttributesRecord{}); err == nil {
			t.Error("authorized a request for a removed cluster")
		}
		if d, _, err := m.Authorize(router.WithCluster(context.Background(), "c"), &authorizer.AttributesRecord{}); d != authorizer.DecisionAllow || err != nil {
			t.Errorf("cluster c: %v %v", d, err)
		}
	})
	t.Run("should reload on a file-system event while running", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.Run(ctx, time.Hour) }()
		defer func() { cancel(); <-done }()
		waitFor := func(name string) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for !m.Known(name) {
				if time.Now().After(deadline) {
					t.Fatalf("cluster %s not added 10s after the file changed", name)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		// Seen by Run's first read or by the watch, whichever comes first.
		writeFile(t, path, "clusters:\n- {name: a, inCluster: true}\n- {name: d, inCluster: true, backend: apiserver}\n")
		waitFor("d")
		wantNames("a", "d")
		// Run is watching now; its period is an hour: only the watch sees this.
		writeFile(t, path, "clusters:\n- {name: a, inCluster: true}\n- {name: e, inCluster: true, backend: apiserver}\n")
		waitFor("e")
		wantNames("a", "e")
	})
}

func TestUpstreamRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusters.yaml")
	writeFile(t, path, "clusters:\n- {name: up, inCluster: true, backend: apiserver}\n")
	m, err := NewManager(path, testSettings(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r, _ := m.Runtime("up")
	u := r.Resolver.(*upstreamResolver)
	if got := u.server.JoinPath("api").String(); got != "https://127.0.0.1:1/prefix-up/api" {
		t.Errorf("upstream server %s", got)
	}
	if !strings.HasPrefix(u.server.String(), "https://127.0.0.1:1") {
		t.Errorf("server %s", u.server)
	}
	// A server URL without a path still yields an absolute path.
	bare, err := newUpstreamResolver(nil, &rest.Config{Host: "https://up.example:6443"})
	if err != nil {
		t.Fatal(err)
	}
	if got := bare.server.JoinPath("api", "v1").String(); got != "https://up.example:6443/api/v1" {
		t.Errorf("bare server joins to %s", got)
	}
}
