package options

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestLivenessOptions(t *testing.T) {
	o := NewLivenessOptions()
	want := LivenessOptions{KubeletPingInterval: 0, KubeletPingTimeout: 15 * time.Second,
		WebSocketPingInterval: 30 * time.Second, WebSocketPingTimeout: 15 * time.Second}
	if o != want {
		t.Fatalf("defaults %+v, want %+v", o, want)
	}
	if errs := o.Validate(); len(errs) != 0 {
		t.Fatalf("defaults invalid: %v", errs)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--kubelet-ping-interval=0", "--kubelet-ping-timeout=0", "--websocket-ping-interval=5s", "--websocket-ping-timeout=0"}); err != nil {
		t.Fatal(err)
	}
	// A disabled ping needs no timeout; an enabled one does.
	errs := o.Validate()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "--websocket-ping-timeout must be positive") {
		t.Fatalf("errors %v, want one about --websocket-ping-timeout", errs)
	}
	o.KubeletPingInterval = -time.Second
	if errs := o.Validate(); len(errs) != 2 || !strings.Contains(errs[0].Error(), "--kubelet-ping-interval must not be negative") {
		t.Fatalf("errors %v", errs)
	}
}
