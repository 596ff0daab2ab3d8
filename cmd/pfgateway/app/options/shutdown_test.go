package options

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestShutdownOptions(t *testing.T) {
	if got := NewOptions().Shutdown; got != (ShutdownOptions{}) {
		t.Fatalf("defaults must be no delay, got %+v", got)
	}
	tests := []struct {
		name    string
		args    []string
		want    ShutdownOptions
		wantErr string
	}{
		{name: "should parse the delay", args: []string{"--shutdown-delay-duration=5s"}, want: ShutdownOptions{Delay: 5 * time.Second}},
		{name: "should accept no delay", args: []string{"--shutdown-delay-duration=0s"}},
		{name: "should refuse a negative delay", args: []string{"--shutdown-delay-duration=-1s"}, want: ShutdownOptions{Delay: -time.Second}, wantErr: "--shutdown-delay-duration must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := parsed(t, tt.args...)
			if o.Shutdown != tt.want {
				t.Fatalf("parsed %+v, want %+v", o.Shutdown, tt.want)
			}
			checkErrs(t, o.Shutdown.Validate(), tt.wantErr)
		})
	}
}

// parsed is a fresh Options with every flag registered and args parsed.
func parsed(t *testing.T, args ...string) *Options {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

// checkErrs fails unless errs is empty (want "") or is one error
// containing want.
func checkErrs(t *testing.T, errs []error, want string) {
	t.Helper()
	switch {
	case want == "" && len(errs) > 0:
		t.Fatalf("unexpected errors %v", errs)
	case want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), want)):
		t.Fatalf("errors %v, want one containing %q", errs, want)
	}
}
