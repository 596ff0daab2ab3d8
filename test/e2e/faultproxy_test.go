package e2e

import (
	"testing"

	"github.com/pfgateway/pfgateway/devcluster/faultproxy"
)

// faultProxy is a devcluster/faultproxy a test can break; it fails the
// test when the proxy cannot listen.
type faultProxy struct {
	*faultproxy.Proxy
	t testing.TB
}

func startFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	p, err := faultproxy.Start(target)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("proxy close: %v", err)
		}
	})
	return &faultProxy{p, t}
}

func (p *faultProxy) port() int32 { return p.Port() }

func (p *faultProxy) reopen() {
	p.t.Helper()
	if err := p.Reopen(); err != nil {
		p.t.Fatalf("proxy listen again: %v", err)
	}
}

func (p *faultProxy) closeListener() {
	if err := p.CloseListener(); err != nil {
		p.t.Errorf("proxy close: %v", err)
	}
}

// pointNodeAt makes the dev node publish port as its kubelet port, so the
// gateway resolves its pods to whatever listens there.
func (e *env) pointNodeAt(t testing.TB, port int32) {
	t.Helper()
	if err := e.cluster.SetKubeletPort(port); err != nil {
		t.Fatal(err)
	}
}
