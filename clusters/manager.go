package clusters

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/portforward"
	"github.com/pfgateway/pfgateway/router"
	"github.com/pfgateway/pfgateway/status"
	"github.com/pfgateway/pfgateway/upgrade"
)

// state is one installed configuration and its runtimes. It is immutable.
type state struct {
	cfg      *Config
	runtimes map[string]*Runtime
}

// Manager holds the served clusters and swaps them when the clusters file
// changes. It is the gateway's cluster lookup: known names (router),
// resolvers (portforward), upstream backends (upgrade), the per-cluster
// authorizer and the read-only relay.
type Manager struct {
	path     string
	settings Settings
	metrics  *reloadMetrics

	cur atomic.Pointer[state]

	mu      sync.Mutex // protects the fields below; serialises reloads
	running bool       // Run has started the informers: new runtimes start at once
}

var _ authorizer.UnconditionalAuthorizer = (*Manager)(nil)

// NewManager reads and validates path and builds every cluster's runtime;
// an error is a start-up error. Nothing runs until Run. Metrics are
// registered on reg.
func NewManager(path string, s Settings, reg Registerer) (*Manager, error) {
	m := &Manager{path: path, settings: s, metrics: newReloadMetrics(path, reg)}
	cfg, err := m.read()
	if err != nil {
		return nil, err
	}
	st, err := m.build(cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.install(st)
	return m, nil
}

// Config is the configuration in force.
func (m *Manager) Config() *Config { return m.cur.Load().cfg }

// Names are the clusters served, in file order.
func (m *Manager) Names() []string { return m.Config().Names() }

// Known says whether name is served now.
func (m *Manager) Known(name string) bool {
	_, ok := m.cur.Load().runtimes[name]
	return ok
}

// Runtime returns name's runtime.
func (m *Manager) Runtime(name string) (*Runtime, bool) {
	r, ok := m.cur.Load().runtimes[name]
	return r, ok
}

// Resolver returns the resolver of cluster name (portforward.Handler).
func (m *Manager) Resolver(name string) (portforward.Resolver, bool) {
	r, ok := m.Runtime(name)
	if !ok {
		return nil, false
	}
	return r.Resolver, true
}

// Backend returns the backend of an apiserver cluster or of a kubelet
// cluster with its own kubelet certificates; nil (the gateway's kubelet
// backend) for the others and unknown ones (upgrade.Proxy.BackendFor).
func (m *Manager) Backend(name string) *upgrade.Backend {
	if r, ok := m.Runtime(name); ok {
		return r.Backend
	}
	return nil
}

// errUnknownCluster fails an authorization for a cluster no longer served
// (removed between the known-cluster check and this one).
var errUnknownCluster = errors.New("the cluster is not served")

// Authorize asks the request's cluster (router.ClusterFrom) with that
// cluster's own SubjectAccessReview authorizer.
func (m *Manager) Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	r, ok := m.Runtime(router.ClusterFrom(ctx))
	if !ok {
		return authorizer.DecisionNoOpinion, "", errUnknownCluster
	}
	return r.Authorizer.Authorize(ctx, a)
}

// ServeHTTP relays a read-only call to the request's cluster.
func (m *Manager) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	name := router.ClusterFrom(req.Context())
	r, ok := m.Runtime(name)
	if !ok {
		status.Write(w, req, apierrors.NewNotFound(schema.GroupResource{Resource: "clusters"}, name))
		return
	}
	r.ReadOnly.ServeHTTP(w, req)
}

// WaitForCacheSync waits for the node informers of the clusters served
// now; false when ctx ends first or one fails.
func (m *Manager) WaitForCacheSync(ctx context.Context) bool {
	for _, r := range m.cur.Load().runtimes {
		if !r.waitForCacheSync(ctx) {
			return false
		}
	}
	return true
}

// build returns the state for cfg, reusing prev's runtimes whose entry did
// not change. The authentication cluster's TokenReview client is built
// once, at start: changing which cluster it is, or that cluster's entry,
// needs a restart and is refused.
func (m *Manager) build(cfg *Config, prev *state) (*state, error) {
	if prev != nil {
		was := prev.cfg.AuthenticationCluster
		if cfg.AuthenticationCluster != was {
			return nil, fmt.Errorf("the authentication cluster is %q until the gateway restarts (the file names %q)", was, cfg.AuthenticationCluster)
		}
		if now, _ := cfg.Get(was); now != prev.runtimes[was].Cluster {
			return nil, fmt.Errorf("the entry of the authentication cluster %q cannot change until the gateway restarts", was)
		}
	}
	st := &state{cfg: cfg, runtimes: map[string]*Runtime{}}
	var built []*Runtime
	for _, cl := range cfg.Clusters {
		if prev != nil {
			if r, ok := prev.runtimes[cl.Name]; ok && r.Cluster == cl {
				st.runtimes[cl.Name] = r
				continue
			}
		}
		r, err := newRuntime(cl, &m.settings)
		if err != nil {
			for _, b := range built {
				b.stop()
			}
			return nil, err
		}
		built = append(built, r)
		st.runtimes[cl.Name] = r
	}
	return st, nil
}

// install puts st in force; runtimes prev had and st does not are stopped
// (their live sessions go on: they hold their own connections).
func (m *Manager) install(st *state) {
	prev := m.cur.Load()
	if m.running {
		for _, r := range st.runtimes {
			r.start()
		}
	}
	m.cur.Store(st)
	m.metrics.installed(st)
	if prev == nil {
		return
	}
	for name, r := range prev.runtimes {
		if st.runtimes[name] != r {
			klog.InfoS("Stopping a cluster's runtime", "cluster", name, "backend", r.Cluster.Backend)
			r.stop()
		}
	}
}

func (m *Manager) read() (*Config, error) {
	data, err := m.metrics.file.Read()
	if err != nil {
		return nil, err
	}
	return m.parse(data)
}

func (m *Manager) parse(data []byte) (*Config, error) {
	c, err := Parse(data, filepath.Dir(m.path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.path, err)
	}
	return c, nil
}
