package options

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestReconnectOptions(t *testing.T) {
	o := NewReconnectOptions()
	if want := (ReconnectOptions{Enabled: true, Attempts: 5, Backoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, ForwardError: "message"}); o != want {
		t.Fatalf("defaults %+v, want %+v", o, want)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "defaults are valid"},
		{name: "off", args: []string{"--kubelet-reconnect=false", "--kubelet-loss-message", "--kubelet-forward-error=reset"}},
		{name: "unknown forward error mode", args: []string{"--kubelet-forward-error=hide"}, wantErr: `--kubelet-forward-error must be "message" or "reset", got "hide"`},
		{name: "no attempts", args: []string{"--kubelet-reconnect-attempts=0"}, wantErr: "--kubelet-reconnect-attempts must be at least 1, got 0"},
		{name: "no backoff", args: []string{"--kubelet-reconnect-backoff=0s"}, wantErr: "--kubelet-reconnect-backoff must be positive, got 0s"},
		{name: "cap below start", args: []string{"--kubelet-reconnect-backoff=2s", "--kubelet-reconnect-max-backoff=1s"},
			wantErr: "--kubelet-reconnect-max-backoff (1s) must not be below --kubelet-reconnect-backoff (2s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewReconnectOptions()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, err := range o.Validate() {
				msgs = append(msgs, err.Error())
			}
			if got := strings.Join(msgs, "; "); got != tt.wantErr {
				t.Fatalf("Validate: %q, want %q", got, tt.wantErr)
			}
		})
	}
}
