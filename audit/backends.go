package audit

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	apiaudit "k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/util/webhook"
	pluginlog "k8s.io/apiserver/plugin/pkg/audit/log"
	pluginwebhook "k8s.io/apiserver/plugin/pkg/audit/webhook"
)

// LogOptions are the --audit-log-* settings, with the kube-apiserver's
// meanings: Path "-" is standard output; MaxSize 0 never rotates.
type LogOptions struct {
	Path       string
	MaxAge     int // days
	MaxBackups int
	MaxSize    int // megabytes
	Compress   bool
}

// NewLogBackend is the apiserver's log backend writing JSON lines of
// audit.k8s.io/v1 Events to the file, rotated by lumberjack when MaxSize is
// set, as the kube-apiserver does (pkg/server/options/audit.go).
func NewLogBackend(o LogOptions) (apiaudit.Backend, error) {
	var w io.Writer
	var c io.Closer
	switch {
	case o.Path == "-":
		w = os.Stdout
	case o.MaxSize == 0:
		f, err := openLogFile(o.Path)
		if err != nil {
			return nil, err
		}
		w, c = f, f
	default:
		f, err := openLogFile(o.Path) // created with the apiserver's 0600
		if err != nil {
			return nil, err
		}
		_ = f.Close()
		// lumberjack v2 keeps one goroutine per Logger after Close (its
		// "mill"); a gateway opens one Logger for its lifetime.
		lj := &lumberjack.Logger{Filename: o.Path, MaxAge: o.MaxAge, MaxBackups: o.MaxBackups, MaxSize: o.MaxSize, Compress: o.Compress}
		w, c = lj, lj
	}
	return &closingBackend{Backend: pluginlog.NewBackend(w, pluginlog.FormatJson, auditv1.SchemeGroupVersion), c: c}, nil
}

func openLogFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("--audit-log-path: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--audit-log-path: %w", err)
	}
	return f, nil
}

// closingBackend closes the log's file on Shutdown (after the last write).
type closingBackend struct {
	apiaudit.Backend
	c io.Closer
}

func (b *closingBackend) Shutdown() {
	b.Backend.Shutdown()
	if b.c != nil {
		_ = b.c.Close()
	}
}

// ProcessEvents is the embedded backend's; spelled out so the type is
// plainly an audit.Backend.
func (b *closingBackend) ProcessEvents(ev ...*auditinternal.Event) bool {
	return b.Backend.ProcessEvents(ev...)
}

// NewWebhookBackend is the apiserver's webhook backend: configFile is a
// kubeconfig naming the service (--audit-webhook-config-file); each batch is
// POSTed as an audit.k8s.io/v1 EventList and retried with exponential
// backoff from initialBackoff (5 tries, each bounded by 30s).
func NewWebhookBackend(configFile string, initialBackoff time.Duration) (apiaudit.Backend, error) {
	b, err := pluginwebhook.NewBackend(configFile, auditv1.SchemeGroupVersion,
		webhook.DefaultRetryBackoffWithInitialDelay(initialBackoff), nil)
	if err != nil {
		return nil, fmt.Errorf("--audit-webhook-config-file: %w", err)
	}
	return b, nil
}
