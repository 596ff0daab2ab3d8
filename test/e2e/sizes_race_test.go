//go:build race

package e2e

// Payload sizes under -race. The race detector slows every instrumented copy
// (spdystream, the gateway's splice, the kubelet's forwarder) five to ten
// times on this 2-core machine, so the biggest payloads shrink by four to
// keep `go test -race ./test/e2e/` within a few minutes. The non-race run
// keeps the full 64 MiB matrix.
const (
	raceEnabled     = true
	matrixBytes     = 16 << 20
	base64Bytes     = 4 << 20
	perConnBytes    = 512 << 10
	perSessionBytes = 1 << 20
)
