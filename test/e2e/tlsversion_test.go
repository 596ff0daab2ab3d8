package e2e

import (
	"crypto/tls"
	"strings"
	"testing"
)

// TestTLSVersions: the client listener speaks TLS 1.2 and 1.3 with Go's
// default cipher suites and refuses older versions at the handshake.
func TestTLSVersions(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name     string
		min, max uint16
		want     uint16 // 0: the handshake must fail
	}{
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, 0},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, 0},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, tls.VersionTLS12},
		{"default", 0, 0, tls.VersionTLS13},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.tlsConfig(true)
			cfg.MinVersion, cfg.MaxVersion = tt.min, tt.max
			c, err := tls.Dial("tcp", e.gw.Addr(), cfg)
			if tt.want == 0 {
				if err == nil {
					_ = c.Close()
					t.Fatalf("handshake with %s succeeded, want a refusal", tt.name)
				}
				if !strings.Contains(err.Error(), "protocol version") {
					t.Errorf("handshake error %q, want the server's protocol version alert", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer c.Close()
			if v := c.ConnectionState().Version; v != tt.want {
				t.Errorf("negotiated %s, want %s", tls.VersionName(v), tls.VersionName(tt.want))
			}
		})
	}
}
