package app

import (
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

func TestSetMemoryLimit(t *testing.T) {
	const container = 1 << 30
	tests := []struct {
		name      string
		env       map[string]string
		from      memlimit.Provider
		wantLimit int64
		wantUnset bool // the limit stays as it was
	}{
		{name: "90 % of the container's limit", from: memlimit.Limit(container), wantLimit: container * 9 / 10},
		{name: "AUTOMEMLIMIT changes the share", env: map[string]string{"AUTOMEMLIMIT": "0.5"}, from: memlimit.Limit(container), wantLimit: container / 2},
		{name: "GOMEMLIMIT wins", env: map[string]string{"GOMEMLIMIT": "100MiB"}, from: memlimit.Limit(container), wantUnset: true},
		{name: "AUTOMEMLIMIT=off skips it", env: map[string]string{"AUTOMEMLIMIT": "off"}, from: memlimit.Limit(container), wantUnset: true},
		{name: "no container limit", from: func() (uint64, error) { return 0, memlimit.ErrNoLimit }, wantUnset: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			const sentinel = 1 << 40
			prev := debug.SetMemoryLimit(sentinel)
			t.Cleanup(func() { debug.SetMemoryLimit(prev) })
			setMemoryLimit(tt.from)
			got := debug.SetMemoryLimit(-1)
			want := tt.wantLimit
			if tt.wantUnset {
				want = sentinel
			}
			if got != want {
				t.Errorf("memory limit %d, want %d", got, want)
			}
		})
	}
}
