// Package streams is pfgateway's stream-semantics test tier
// (docs/stream-relay.md §11): every scenario runs once directly against the
// test kubelet and once through the gateway in each splice mode (opaque,
// streams, streams with early replies), each run records a normalised
// client-side SPDY transcript, and the gateway's transcripts must equal the
// direct one. Only the early-reply differences of §8 are allowed, and each
// is spelled out in the case that has it.
//
// Clients are a raw spdystream client (for malformed and hand-sequenced
// streams) and client-go's PortForwarder over SPDY and the WebSocket
// tunnel (for what kubectl users meet).
//
// Every (case, path) runs on its own dev cluster and gateway, in parallel;
// each result must equal the case's golden (the direct path's result, with
// the alternatives a kubelet race allows, each explained where it is
// defined), and every gateway result must equal the direct one.
//
// Everything lives in _test.go files; run it with
//
//	go test -race -short ./test/streams/      # skips the 30-s cases
//	go test -race -parallel 8 ./test/streams/ # all; the tier waits more than it computes
//	go test ./test/streams/ -streams.paths=direct,opaque  # only some paths
//	go test ./test/streams/ -streams.logs     # with klog output
//
// The gateway paths set options.Streams.SpliceMode (options.SpliceOpaque,
// options.SpliceStreams) and options.Streams.EarlyReply; see env_test.go.
package streams
