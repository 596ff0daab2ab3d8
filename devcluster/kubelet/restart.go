package kubelet

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// Restart kills the kubelet as Close does (every connection cut, upgraded
// ones included, like a kubelet that crashed) and serves again on the same
// address, with the same pods: what a gateway sees of a kubelet restart.
// Callers must not Close concurrently.
func (k *Kubelet) Restart() error {
	addr := k.Addr()
	_ = k.Close() // may report handlers slow to unwind; the restart goes on
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("kubelet: listen %s again: %w", addr, err)
	}
	k.lifeMu.Lock()
	k.ln = &trackingListener{Listener: raw, conns: map[*trackedConn]struct{}{}}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	k.srv = &http.Server{Handler: k, ReadHeaderTimeout: readHeaderTimeout,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	k.closed, k.closeOnce, k.closeErr = false, sync.Once{}, nil
	srv, ln := k.srv, k.ln
	k.lifeMu.Unlock()
	go srv.Serve(tls.NewListener(ln, serverConfig(k.opts.TLS))) //nolint:errcheck // ErrServerClosed on Close
	return nil
}

// serverConfig is the kubelet's TLS serving configuration built from o.
func serverConfig(o *tls.Config) *tls.Config {
	cfg := o.Clone()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}
