// Package apiserver is a small in-memory stand-in for the Kubernetes API
// server, for the demo command and in-process end-to-end tests. It serves
// the read-only calls kubectl port-forward, kubectl get and client-go
// informers make (version, discovery, get, list and watch of a few core and
// apps resources) closely enough that they cannot tell it from the real
// thing, without an etcd or a kube-apiserver binary.
package apiserver

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/version"
	clienttesting "k8s.io/client-go/testing"
)

// maxRecorded bounds the request log of a long-running demo.
const maxRecorded = 10000

// Options configure a Server.
type Options struct {
	// TLS is the serving configuration, certificate included. Nil serves
	// plain HTTP.
	TLS *tls.Config
	// GitVersion is the version /version reports, e.g. "v1.33.0" (the
	// default); Major and Minor are derived from it.
	GitVersion string
	// Objects are stored before serving starts: core/v1 Pods, Nodes,
	// Services, Namespaces, ReplicationControllers and apps/v1 Deployments,
	// ReplicaSets, StatefulSets, DaemonSets.
	Objects []k8sruntime.Object
	// SubjectAccessReview decides POSTed SubjectAccessReviews; nil is
	// AllowAll. SetSubjectAccessReviewer changes it while serving.
	SubjectAccessReview SubjectAccessReviewFunc
	// Tokens answer TokenReviews (tokenreview.go); SetTokens changes them.
	Tokens map[string]TokenUser
}

// RecordedRequest is a request as the server received it.
type RecordedRequest struct {
	Method string
	Path   string // path with raw query
	Header http.Header
}

// Server is a running fake API server.
type Server struct {
	url     string
	version version.Info
	store   *store
	srv     *http.Server
	served  chan struct{} // closed when Serve returns
	done    chan struct{} // closed by Close to end watches
	close   sync.Once

	mu       sync.Mutex
	requests []RecordedRequest

	sar    sarState
	tokens tokenTable
}

// Start stores o.Objects and serves on 127.0.0.1 at a free port.
func Start(o Options) (*Server, error) {
	info, err := versionInfo(o.GitVersion)
	if err != nil {
		return nil, err
	}
	s := &Server{version: info, store: newStore(), served: make(chan struct{}), done: make(chan struct{})}
	s.sar.decide = o.SubjectAccessReview
	for _, obj := range o.Objects {
		if err := s.store.Add(obj); err != nil {
			return nil, fmt.Errorf("apiserver: adding initial object: %w", err)
		}
	}
	s.tokens.set(o.Tokens)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.srv = &http.Server{
		Handler:  s,
		ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	s.url = "http://" + ln.Addr().String()
	serve := func() error { return s.srv.Serve(ln) }
	if o.TLS != nil {
		s.url = "https://" + ln.Addr().String()
		s.srv.TLSConfig = o.TLS.Clone() // ServeTLS adds h2 to NextProtos, as the real server offers
		serve = func() error { return s.srv.ServeTLS(ln, "", "") }
	}
	go func() {
		defer close(s.served)
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("fake apiserver stopped", "url", s.url, "err", err)
		}
	}()
	slog.Debug("fake apiserver listening", "url", s.url, "gitVersion", info.GitVersion)
	return s, nil
}

// URL is the server's base URL, e.g. "https://127.0.0.1:PORT".
func (s *Server) URL() string { return s.url }

// Tracker holds the served objects. Changes made through it get a new
// resourceVersion and reach open watches.
func (s *Server) Tracker() clienttesting.ObjectTracker { return s.store }

// Requests returns the requests received so far, oldest first (at most the
// last 10000).
func (s *Server) Requests() []RecordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RecordedRequest, len(s.requests))
	for i, r := range s.requests {
		out[i] = RecordedRequest{Method: r.Method, Path: r.Path, Header: r.Header.Clone()}
	}
	return out
}

// Close ends open watches and stops the server.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() {
		close(s.done)
		s.store.closeAll()
		err = s.srv.Close()
		<-s.served
	})
	return err
}

func (s *Server) record(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) >= maxRecorded {
		s.requests = append(s.requests[:0:0], s.requests[len(s.requests)-maxRecorded/2:]...)
	}
	s.requests = append(s.requests, RecordedRequest{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone()})
}

// ServeHTTP routes a request. Only reads and SubjectAccessReviews are
// served; like kube-apiserver, every answer carries an Audit-Id and forbids
// caching.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.record(r)
	w.Header().Set("Audit-Id", string(uuid.NewUUID()))
	w.Header().Set("Cache-Control", "no-cache, private")
	if r.URL.Path == subjectAccessReviewPath {
		s.serveSubjectAccessReview(w, r)
		return
	}
	if s.serveTokenReview(w, r) {
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, r, methodNotAllowed())
		return
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case p == "/version":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.version)
	case p == "/healthz" || p == "/readyz" || p == "/livez":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write([]byte("ok"))
	case p == "/api" || p == "/apis" || p == "/apis/apps":
		s.serveDiscovery(w, r, p)
	case p == "/api/v1" || strings.HasPrefix(p, "/api/v1/"):
		s.serveGroupVersion(w, r, coreV1, strings.TrimPrefix(p, "/api/v1"))
	case p == "/apis/apps/v1" || strings.HasPrefix(p, "/apis/apps/v1/"):
		s.serveGroupVersion(w, r, appsV1, strings.TrimPrefix(p, "/apis/apps/v1"))
	default:
		writeError(w, r, notFound())
	}
}

var gitVersionRE = regexp.MustCompile(`^v(\d+)\.(\d+)\.\d+`)

// versionInfo builds what /version reports for gitVersion.
func versionInfo(gitVersion string) (version.Info, error) {
	if gitVersion == "" {
		gitVersion = "v1.33.0"
	}
	m := gitVersionRE.FindStringSubmatch(gitVersion)
	if m == nil {
		return version.Info{}, fmt.Errorf("apiserver: GitVersion %q is not like v1.33.0", gitVersion)
	}
	info := version.Info{
		Major:        m[1],
		Minor:        m[2],
		GitVersion:   gitVersion,
		GitCommit:    "0000000000000000000000000000000000000000",
		GitTreeState: "clean",
		BuildDate:    "2025-01-01T00:00:00Z",
		GoVersion:    runtime.Version(),
		Compiler:     runtime.Compiler,
		Platform:     "linux/amd64",
	}
	// Servers from 1.33 on also report their compatibility versions.
	var minor int
	if _, err := fmt.Sscan(m[2], &minor); err == nil && m[1] == "1" && minor >= 33 {
		info.EmulationMajor, info.EmulationMinor = m[1], m[2]
		info.MinCompatibilityMajor, info.MinCompatibilityMinor = m[1], fmt.Sprint(minor-1)
	}
	return info, nil
}
