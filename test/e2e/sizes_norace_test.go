//go:build !race

package e2e

// Payload sizes without the race detector: the client matrix moves the full
// 64 MiB each way per client.
const (
	raceEnabled = false
	// matrixBytes is what each client-matrix case moves each way.
	matrixBytes = 64 << 20
	// base64Bytes is the legacy base64 case: every byte is 4/3 on the wire
	// and encoded/decoded by three parties, so it moves less.
	base64Bytes = 8 << 20
	// perConnBytes is each of the 50 connections of one session.
	perConnBytes = 2 << 20
	// perSessionBytes is each of the 20 concurrent sessions.
	perSessionBytes = 4 << 20
)
