package options

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestAuditFlagsParse(t *testing.T) {
	o := NewOptions()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	err := fs.Parse([]string{"--audit-log-path=/var/log/pf.log", "--audit-log-maxage=7", "--audit-log-maxbackup=3",
		"--audit-log-maxsize=100", "--audit-log-compress", "--audit-webhook-config-file=/etc/wh", "--audit-webhook-initial-backoff=1s",
		"--audit-buffer-size=5", "--audit-overflow=refuse"})
	if err != nil {
		t.Fatal(err)
	}
	want := AuditOptions{LogPath: "/var/log/pf.log", LogMaxAge: 7, LogMaxBackups: 3, LogMaxSize: 100, LogCompress: true,
		WebhookConfigFile: "/etc/wh", WebhookInitialBackoff: time.Second, BufferSize: 5, Overflow: "refuse"}
	if o.Audit != want {
		t.Fatalf("parsed %+v, want %+v", o.Audit, want)
	}
	if !o.Audit.Enabled() || NewOptions().Audit.Enabled() {
		t.Error("Enabled should hold with a sink and not by default")
	}
}

func TestAuditValidate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wh")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(*AuditOptions)
		wantErr string
	}{
		{name: "should accept the defaults", mutate: func(*AuditOptions) {}},
		{name: "should accept both sinks and refuse", mutate: func(o *AuditOptions) { o.LogPath, o.WebhookConfigFile, o.Overflow = "-", file, "refuse" }},
		{name: "should refuse a negative maxage", mutate: func(o *AuditOptions) { o.LogMaxAge = -1 }, wantErr: "--audit-log-maxage -1 can't be a negative number"},
		{name: "should refuse a negative maxbackup", mutate: func(o *AuditOptions) { o.LogMaxBackups = -1 }, wantErr: "--audit-log-maxbackup"},
		{name: "should refuse a negative maxsize", mutate: func(o *AuditOptions) { o.LogMaxSize = -1 }, wantErr: "--audit-log-maxsize"},
		{name: "should name a missing webhook config", mutate: func(o *AuditOptions) { o.WebhookConfigFile = file + "x" }, wantErr: "--audit-webhook-config-file"},
		{name: "should refuse a zero backoff", mutate: func(o *AuditOptions) { o.WebhookInitialBackoff = 0 }, wantErr: "--audit-webhook-initial-backoff"},
		{name: "should refuse a zero buffer", mutate: func(o *AuditOptions) { o.BufferSize = 0 }, wantErr: "--audit-buffer-size 0"},
		{name: "should refuse an unknown overflow mode", mutate: func(o *AuditOptions) { o.Overflow = "block" }, wantErr: `--audit-overflow "block"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewAuditOptions()
			tt.mutate(&o)
			var msgs []string
			for _, err := range o.Validate() {
				if err != nil {
					msgs = append(msgs, err.Error())
				}
			}
			got := strings.Join(msgs, "; ")
			if tt.wantErr == "" && got != "" || !strings.Contains(got, tt.wantErr) {
				t.Fatalf("got %q, want an error containing %q", got, tt.wantErr)
			}
		})
	}
}
