package main

import (
	"os"
	"runtime"
	"strings"
)

// methodNote is the one-paragraph description of how the figures are made.
const methodNote = `Method: the benchmark starts a dev cluster in its own process (in-memory API server, test kubelet on k8s.io/cri-streaming behind TLS with client-certificate checks, a pod whose port is a TCP source and sink), builds ./cmd/pfgateway with ` + "`go build`" + ` and runs it as a child process pointed at the cluster's files, and waits for its /readyz. Every path first carries a warm-up transfer each way whose bytes are verified. Each run then measures the TLS floor and the transfers. The floor is one loopback TLS connection in the benchmark process, with all sessions closed: a sender goroutine encrypts and writes the floor size in 32 KiB writes, a receiver goroutine reads and decrypts it, with ECDSA P-256 certificates from devcluster/pki and Go's default TLS 1.3 suite; its figure is the process's getrusage(RUSAGE_SELF) user+system time per GiB, one encryption and one decryption of every byte, the least a splicing gateway spends. The transfers use client-go's port forwarder with the SPDY dialer or the SPDY-over-WebSocket tunnel dialer, straight to the kubelet (https://127.0.0.1:PORT/portForward/default/bench; the test kubelet terminates the tunnel itself) or through the gateway (/api/v1/namespaces/default/pods/bench/portforward), paths in an order rotated between runs; through a fresh forwarded TCP connection each, they download and then upload the transfer size, timed from the request to the last byte (download) or to the pod's acknowledgement of the last byte (upload). Around every gateway transfer the benchmark reads the child's utime+stime from /proc/PID/stat (clock ticks, AT_CLKTCK) and its system-call counts from /proc/PID/io; the gateway's CPU per GiB over the floor's is its cost ratio, its throughput over the direct path's in the same mode and direction its throughput ratio. Client, kubelet and pod server share the machine's cores with the gateway, as on a small node, so on a 2-core machine throughput is bounded by the CPU all of them need; their CPU is shown as "bench process". Before each measurement the benchmark waits for other processes to leave the machine nearly idle (-quiet-below, -quiet-wait) and it reports their load during each. Unless -relay=false, the same transfers also go through the reference relay (bench/internal/refrelay, row "relay"), a yardstick and not a product: a child process of about a hundred lines that terminates TLS with the gateway's serving certificate (no client-certificate check, no API server, no authorization, no metrics), rewrites the path to the kubelet's, forwards the request head to the kubelet over TLS with the gateway's kubelet client certificate and then copies bytes both ways with io.Copy; its CPU and throughput are measured exactly like the gateway's, so its row shows what the simplest TLS-terminating relay reaches on the same machine. Each -splice variant of the gateway is its own child process (opaque: --splice-mode=opaque; streams: --splice-mode=streams --early-stream-reply=false; streams-early: --early-stream-reply=true), measured as its own path; "÷ opaque" divides by the opaque child of the same binary in the same run. Around each gateway transfer the benchmark also scrapes the child's /metrics just before and just after, outside the CPU window, and reports the change in go_memstats_mallocs_total and go_memstats_alloc_bytes_total per MiB moved, less what one scrape allocates in the child (the median of 20 back-to-back scrapes when it started); the runtime counts allocations a cached span at a time, so the figures are exact to about a thousand objects per transfer (now and then a few thousand). After the transfers, new-connection latency: per mode, one forward per path to the pod's echo port, then sequential new local connections through each (the paths taking turns), each timed from the dial to the echo of one byte; once with the kubelet reached directly and, with -kubelet-rtt, once through a TCP proxy in the benchmark process that delays each direction by half that round trip, for the direct path and the gateways alike (the gateways reach it through a second node object whose kubelet endpoint is the proxy). Figures are medians of the runs with the lowest and highest in brackets; the command never fails on a figure.`

// machine describes where the run happened.
type machine struct {
	CPU, Kernel, GoVersion, OS string
	Cores, GOMAXPROCS          int
}

func describeMachine() machine {
	m := machine{CPU: "unknown CPU", Kernel: "unknown", GoVersion: runtime.Version(), OS: "unknown OS", Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}
