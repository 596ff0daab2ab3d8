//go:build !race

// Allocation checks run without the race detector, whose instrumentation
// and sync.Pool (it drops a quarter of what is put back) allocate;
// hack/test.sh runs them in a step of their own.

package upgrade

import (
	"crypto/tls"
	"io"
	"testing"
)

// TestWSWriterAllocs: a message costs the writer no allocation.
func TestWSWriterAllocs(t *testing.T) {
	c, client := wsWriterPair(t, 0)
	// Drained below TLS: a TLS reader's own allocations would count too.
	go func() { _, _ = io.Copy(io.Discard, client.NetConn().(*tls.Conn).NetConn()) }()
	for _, n := range []int{100, 32776, frameBufSize} {
		p := make([]byte, n)
		if allocs := testing.AllocsPerRun(200, func() {
			if _, err := c.Write(p); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Errorf("%d-byte messages: %.1f allocations each", n, allocs)
		}
	}
}
