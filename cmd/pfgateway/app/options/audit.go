package options

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/pfgateway/pfgateway/audit"
)

// AuditOptions configure the audit records of port-forward sessions. The
// --audit-log-* and --audit-webhook-* flags mean what the kube-apiserver's do.
type AuditOptions struct {
	LogPath               string
	LogMaxAge             int
	LogMaxBackups         int
	LogMaxSize            int
	LogCompress           bool
	WebhookConfigFile     string
	WebhookInitialBackoff time.Duration
	BufferSize            int
	Overflow              string
}

// NewAuditOptions returns the defaults: no sink, so no audit.
func NewAuditOptions() AuditOptions {
	return AuditOptions{WebhookInitialBackoff: 10 * time.Second, BufferSize: 10000, Overflow: audit.OverflowDrop}
}

// Enabled: at least one sink is configured.
func (o *AuditOptions) Enabled() bool { return o.LogPath != "" || o.WebhookConfigFile != "" }

// AddFlags registers the audit flags on fs.
func (o *AuditOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.LogPath, "audit-log-path", o.LogPath, "If set, port-forward sessions, their forwarded connections and refused port-forward requests are written to this file as audit.k8s.io/v1 Event JSON lines. '-' means standard out.")
	fs.IntVar(&o.LogMaxAge, "audit-log-maxage", o.LogMaxAge, "The maximum number of days to retain old audit log files based on the timestamp encoded in their filename.")
	fs.IntVar(&o.LogMaxBackups, "audit-log-maxbackup", o.LogMaxBackups, "The maximum number of old audit log files to retain. Setting a value of 0 will mean there's no restriction on the number of files.")
	fs.IntVar(&o.LogMaxSize, "audit-log-maxsize", o.LogMaxSize, "The maximum size in megabytes of the audit log file before it gets rotated (0: never rotated).")
	fs.BoolVar(&o.LogCompress, "audit-log-compress", o.LogCompress, "If set, the rotated log files will be compressed using gzip.")
	fs.StringVar(&o.WebhookConfigFile, "audit-webhook-config-file", o.WebhookConfigFile, "Path to a kubeconfig formatted file that defines the audit webhook configuration; events are POSTed as audit.k8s.io/v1 EventLists.")
	fs.DurationVar(&o.WebhookInitialBackoff, "audit-webhook-initial-backoff", o.WebhookInitialBackoff, "The amount of time to wait before retrying the first failed request.")
	fs.IntVar(&o.BufferSize, "audit-buffer-size", o.BufferSize, "Events each audit sink buffers; the data path never waits for a sink.")
	fs.StringVar(&o.Overflow, "audit-overflow", o.Overflow, "What a full buffer or failing audit sink does: \"drop\" drops (and counts) events; \"refuse\" also refuses new port-forward sessions with 503 until the sink recovers (live sessions continue).")
}

// Validate returns every problem, each naming its flag.
func (o *AuditOptions) Validate() []error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{{"--audit-log-maxage", o.LogMaxAge}, {"--audit-log-maxbackup", o.LogMaxBackups}, {"--audit-log-maxsize", o.LogMaxSize}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d can't be a negative number", f.name, f.v))
		}
	}
	if o.WebhookConfigFile != "" {
		errs = append(errs, fileFlag("--audit-webhook-config-file", o.WebhookConfigFile))
	}
	errs = append(errs, positive("--audit-webhook-initial-backoff", o.WebhookInitialBackoff))
	if o.BufferSize < 1 || o.BufferSize > 1<<20 {
		errs = append(errs, fmt.Errorf("--audit-buffer-size %d must be between 1 and 1048576", o.BufferSize))
	}
	if o.Overflow != audit.OverflowDrop && o.Overflow != audit.OverflowRefuse {
		errs = append(errs, fmt.Errorf("--audit-overflow %q must be %q or %q", o.Overflow, audit.OverflowDrop, audit.OverflowRefuse))
	}
	return errs
}
