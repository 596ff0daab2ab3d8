package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestFaultFlag(t *testing.T) {
	tests := []struct {
		name, in string
		want     []fault
		wantErr  string
	}{
		{name: "should take a list", in: "client-reset, pod-close", want: []fault{faultClientReset, faultPodClose}},
		{name: "should take none", in: "", want: nil},
		{name: "should skip none", in: "none,forbidden", want: []fault{faultForbidden}},
		{name: "should refuse an unknown fault", in: "meteor", wantErr: `unknown fault "meteor"`},
		{name: "should take the backend faults", in: "kubelet-restart,pod-close,backend-cut", want: []fault{faultKubeletRestart, faultPodClose, faultBackendCut}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []fault
			err := faultFlag{&got}.Set(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Set(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tt.want) {
				t.Fatalf("Set(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("Set(%q) = %v, want %v", tt.in, got, tt.want)
				}
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {99, 10}, {100, 10}, {0, 1}, {10, 1}, {11, 2}, {15, 2}} {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("percentile(1..10, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

// TestEchoPod checks the echo pod's contract: it echoes the first k of n
// bytes, reads the rest and closes.
func TestEchoPod(t *testing.T) {
	p, err := startEchoPod()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, tt := range []struct{ n, k int }{{1000, 1000}, {100000, 3}, {100000, 0}, {5, 10}} {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("soak"), tt.n/4+1)[:tt.n]
		go func() { _, _ = c.Write(append(echoHeader(tt.n, tt.k), data...)) }()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		want := data[:min(tt.k, tt.n)]
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("n=%d k=%d: got %d bytes (err %v), want the first %d then EOF", tt.n, tt.k, len(got), err, len(want))
		}
	}
}

func TestIsShutdownText(t *testing.T) {
	podAddrs = map[int]string{hashPort: "127.0.0.1:4000"}
	t.Cleanup(func() { podAddrs = map[int]string{} })
	for _, tt := range []struct {
		m    string
		want bool
	}{
		{"error forwarding port 9000 to pod soak_default, uid uid-default-soak: kubelet is shutting down", true},
		{"error forwarding port 9999 to pod soak_default, uid uid-default-soak: kubelet is shutting down", true},
		{`error forwarding port 9000 to pod soak_default, uid uid-default-soak: failed to connect to localhost:9000 inside namespace "uid-default-soak": dial tcp 127.0.0.1:4000: operation was canceled`, true},
		{`error forwarding port 9000 to pod soak_default, uid uid-default-soak: failed to connect to localhost:9000 inside namespace "uid-default-soak": dial tcp 127.0.0.1:4001: operation was canceled`, false},
		{"error forwarding port 9001 to pod soak_default, uid uid-default-soak: kubelet is shutting down", false},
		{"", false},
	} {
		if got := isShutdownText(tt.m); got != tt.want {
			t.Errorf("isShutdownText(%q) = %v, want %v", tt.m, got, tt.want)
		}
	}
}
