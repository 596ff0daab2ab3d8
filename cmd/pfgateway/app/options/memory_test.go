package options

import (
	"testing"
	"time"
)

func TestMemoryOptions(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		interval time.Duration
		wantErr  string
	}{
		{name: "should look every 30 s by default", interval: 30 * time.Second},
		{name: "should parse the interval", args: []string{"--memory-return-interval=5m"}, interval: 5 * time.Minute},
		{name: "should turn off with 0", args: []string{"--memory-return-interval=0s"}},
		{name: "should refuse a negative interval", args: []string{"--memory-return-interval=-1s"}, interval: -time.Second, wantErr: "--memory-return-interval must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := parsed(t, tt.args...)
			if got := o.Memory.Returner(); got.Interval != tt.interval || got.MinBytes != 4<<20 {
				t.Fatalf("parsed %+v, want interval %v and 4 MiB", got, tt.interval)
			}
			checkErrs(t, o.Memory.Validate(), tt.wantErr)
		})
	}
}
