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
			o := NewOptions()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if o.Shutdown != tt.want {
				t.Fatalf("parsed %+v, want %+v", o.Shutdown, tt.want)
			}
			errs := o.Shutdown.Validate()
			switch {
			case tt.wantErr == "" && len(errs) > 0:
				t.Fatalf("unexpected errors %v", errs)
			case tt.wantErr != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr)):
				t.Fatalf("errors %v, want one containing %q", errs, tt.wantErr)
			}
		})
	}
}
