package policy

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pfgateway/pfgateway/filewatch"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Reload results, the values of the reloads counter's result label.
const (
	ResultSuccess = filewatch.ResultSuccess
	ResultFailure = filewatch.ResultFailure
)

// debounce lets an editor or a ConfigMap update finish writing before the
// file is read: events closer together than this cause one read.
const debounce = 100 * time.Millisecond

// Loader holds the policy in force and replaces it when the file changes.
// A nil *Loader is "no policy": Current returns nil.
type Loader struct {
	path string
	// Check, if set, rejects a policy the running gateway cannot enforce
	// (at start: an error; on reload: kept out like a bad file).
	check func(*Policy) error

	cur atomic.Pointer[Policy]

	mu   sync.Mutex // serialises reloads
	file *filewatch.File
	info *prometheus.GaugeVec
}

// NewLoader reads and validates path; an error is a start-up error. check
// may be nil. The metrics are registered on reg.
func NewLoader(path string, check func(*Policy) error, reg prometheus.Registerer) (*Loader, error) {
	l := &Loader{
		path:  path,
		check: check,
		file:  filewatch.NewFile(path, MaxFileSize, "policy", "the --policy-file", "the policy"),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "pfgateway", Subsystem: "policy", Name: "info",
			Help: "1 for the policy in force, labelled with the SHA-256 of its file.",
		}, []string{"hash"}),
	}
	data, err := l.file.Read()
	if err != nil {
		return nil, err
	}
	p, err := l.parse(data)
	if err != nil {
		return nil, err
	}
	// Registered only now: a failed start leaves reg as it was.
	l.file.MustRegister(reg)
	reg.MustRegister(l.info)
	l.install(p)
	return l, nil
}

// Current is the policy in force; nil when l is nil.
func (l *Loader) Current() *Policy {
	if l == nil {
		return nil
	}
	return l.cur.Load()
}

// Run watches the file's directory (a ConfigMap update swaps a symlink
// there, which a watch on the file itself would miss) and also checks
// every period, in case an event is lost, until ctx ends.
func (l *Loader) Run(ctx context.Context, period time.Duration) {
	filewatch.Run(ctx, l.path, "policy", period, debounce, l.Reload)
}

// Reload reads the file and installs it if it changed and is valid. A bad
// or missing file is logged and counted once per content (or error); the
// policy in force stays: deleting the file must not silently lift it.
func (l *Loader) Reload() {
	l.mu.Lock()
	defer l.mu.Unlock()
	var p *Policy
	applied, err := l.file.Reload(l.cur.Load().Hash, func(data []byte) (err error) {
		if p, err = l.parse(data); err == nil {
			l.install(p)
		}
		return err
	})
	switch {
	case err != nil:
		klog.ErrorS(err, "Keeping the gateway policy in force", "path", l.path, "hash", l.cur.Load().Hash)
	case applied:
		klog.InfoS("Reloaded the gateway policy", "path", l.path, "hash", p.Hash, "rules", len(p.rules))
	}
}

func (l *Loader) install(p *Policy) {
	l.cur.Store(p)
	l.file.Loaded()
	l.info.Reset()
	l.info.WithLabelValues(p.Hash).Set(1)
}

func (l *Loader) parse(data []byte) (*Policy, error) {
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.path, err)
	}
	if l.check != nil {
		if err := l.check(p); err != nil {
			return nil, fmt.Errorf("%s: %w", l.path, err)
		}
	}
	return p, nil
}
