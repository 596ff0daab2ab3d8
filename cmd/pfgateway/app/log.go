package app

import (
	"log"
	"strings"

	"k8s.io/klog/v2"
)

// klogWriterLogger routes net/http's own error log (TLS handshake failures,
// header read errors) to klog at V(2): they are the client's problem and
// would otherwise flood stderr.
func klogWriterLogger() *log.Logger {
	return log.New(klogWriter{}, "", 0)
}

type klogWriter struct{}

func (klogWriter) Write(p []byte) (int, error) {
	klog.V(2).InfoS("HTTP server", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}
