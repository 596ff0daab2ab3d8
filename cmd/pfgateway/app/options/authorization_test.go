package options

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestAuthorizationOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    AuthorizationOptions
		wantErr string // substring of the one error; "" for none
	}{
		{name: "should default to Webhook with 10s caches", want: NewAuthorizationOptions()},
		{name: "should parse AlwaysAllow and the TTLs",
			args: []string{"--authorization-mode=AlwaysAllow", "--authorization-webhook-cache-authorized-ttl=5m", "--authorization-webhook-cache-unauthorized-ttl=0s"},
			want: AuthorizationOptions{Mode: "AlwaysAllow", WebhookCacheAuthorizedTTL: 5 * time.Minute}},
		{name: "should refuse an unknown mode", args: []string{"--authorization-mode=RBAC"},
			want:    AuthorizationOptions{Mode: "RBAC", WebhookCacheAuthorizedTTL: 10 * time.Second, WebhookCacheUnauthorizedTTL: 10 * time.Second},
			wantErr: `--authorization-mode "RBAC" must be "Webhook" or "AlwaysAllow"`},
		{name: "should refuse a negative TTL", args: []string{"--authorization-webhook-cache-unauthorized-ttl=-1s"},
			want:    AuthorizationOptions{Mode: "Webhook", WebhookCacheAuthorizedTTL: 10 * time.Second, WebhookCacheUnauthorizedTTL: -time.Second},
			wantErr: "--authorization-webhook-cache-unauthorized-ttl must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewAuthorizationOptions()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if o != tt.want {
				t.Errorf("parsed %+v, want %+v", o, tt.want)
			}
			errs := o.Validate()
			switch {
			case tt.wantErr == "" && len(errs) > 0:
				t.Errorf("Validate: %v", errs)
			case tt.wantErr != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr)):
				t.Errorf("Validate: %v, want one error containing %q", errs, tt.wantErr)
			}
		})
	}
}
