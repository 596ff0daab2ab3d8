package options

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestLimitsOptions(t *testing.T) {
	if got := NewLimitsOptions(); got != (LimitsOptions{}) {
		t.Fatalf("defaults must be no limits, got %+v", got)
	}
	tests := []struct {
		name    string
		args    []string
		want    LimitsOptions
		wantErr string
	}{
		{name: "should parse every limit", args: []string{"--max-sessions=100", "--max-sessions-per-user=2", "--session-idle-timeout=5m", "--max-session-duration=8h"},
			want: LimitsOptions{MaxSessions: 100, MaxSessionsPerUser: 2, SessionIdleTimeout: 5 * time.Minute, MaxSessionDuration: 8 * time.Hour}},
		{name: "should accept zero as no limit", args: []string{"--max-sessions=0", "--session-idle-timeout=0s"}},
		{name: "should refuse a negative global limit", args: []string{"--max-sessions=-1"}, want: LimitsOptions{MaxSessions: -1}, wantErr: "--max-sessions must not be negative"},
		{name: "should refuse a negative per-user limit", args: []string{"--max-sessions-per-user=-2"}, want: LimitsOptions{MaxSessionsPerUser: -2}, wantErr: "--max-sessions-per-user must not be negative"},
		{name: "should refuse a negative idle timeout", args: []string{"--session-idle-timeout=-1s"}, want: LimitsOptions{SessionIdleTimeout: -time.Second}, wantErr: "--session-idle-timeout must not be negative"},
		{name: "should parse the forwards limit", args: []string{"--max-forwards-per-session=100"}, want: LimitsOptions{MaxForwardsPerSession: 100}},
		{name: "should refuse a negative forwards limit", args: []string{"--max-forwards-per-session=-1"}, want: LimitsOptions{MaxForwardsPerSession: -1}, wantErr: "--max-forwards-per-session must be between 0 and 32768"},
		{name: "should refuse a forwards limit no session can reach", args: []string{"--max-forwards-per-session=40000"}, want: LimitsOptions{MaxForwardsPerSession: 40000}, wantErr: "--max-forwards-per-session must be between 0 and 32768"},
		{name: "should refuse a negative duration", args: []string{"--max-session-duration=-1h"}, want: LimitsOptions{MaxSessionDuration: -time.Hour}, wantErr: "--max-session-duration must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewLimitsOptions()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if o != tt.want {
				t.Fatalf("parsed %+v, want %+v", o, tt.want)
			}
			errs := o.Validate()
			switch {
			case tt.wantErr == "" && len(errs) > 0:
				t.Fatalf("unexpected errors %v", errs)
			case tt.wantErr != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr)):
				t.Fatalf("errors %v, want one containing %q", errs, tt.wantErr)
			}
		})
	}
}
