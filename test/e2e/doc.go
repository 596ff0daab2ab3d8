// Package e2e is pfgateway's in-process end-to-end test tier (DESIGN.md §5,
// tier 2): a dev cluster (in-memory API server and a test kubelet on
// k8s.io/cri-streaming behind real mTLS), a "hash pod" (devcluster/hashpod)
// whose protocol lets every byte be checked both ways, the gateway built with
// app.Complete and app.New, and the real clients: client-go's SPDY,
// WebSocket-tunnel and fallback dialers, a legacy v4 WebSocket channel
// client, and kubectl binaries.
//
// Everything lives in _test.go files; run it with
//
//	go test ./test/e2e/            # full payloads (64 MiB per matrix case)
//	go test -race ./test/e2e/      # payloads reduced, see sizes_race_test.go
//	go test -v ./test/e2e/ -e2e.logs  # with the gateway's klog output
package e2e
