package app

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pfgateway/pfgateway/audit"
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

// auditFlushTimeout bounds the wait, at shutdown, for audit sinks to write
// what they buffered.
const auditFlushTimeout = 10 * time.Second

// newAuditor builds the audit sinks o asks for; nil when it asks for none.
func newAuditor(o options.AuditOptions, reg prometheus.Registerer) (*audit.Auditor, error) {
	if !o.Enabled() {
		return nil, nil
	}
	var backends []audit.Backend
	if o.LogPath != "" {
		b, err := audit.NewLogBackend(audit.LogOptions{
			Path: o.LogPath, MaxAge: o.LogMaxAge, MaxBackups: o.LogMaxBackups, MaxSize: o.LogMaxSize, Compress: o.LogCompress,
		})
		if err != nil {
			return nil, err
		}
		backends = append(backends, audit.Backend{Name: "log", Backend: b})
	}
	if o.WebhookConfigFile != "" {
		b, err := audit.NewWebhookBackend(o.WebhookConfigFile, o.WebhookInitialBackoff)
		if err != nil {
			for _, b := range backends {
				b.Backend.Shutdown() // closes the log file
			}
			return nil, err
		}
		backends = append(backends, audit.Backend{Name: "webhook", Backend: b})
	}
	return audit.New(audit.Config{Backends: backends, BufferSize: o.BufferSize, Overflow: o.Overflow, Registry: reg})
}
