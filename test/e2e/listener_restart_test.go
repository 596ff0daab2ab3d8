package e2e

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
)

// restartingPod adds pod "flaky" whose port hashPort is served by the hash
// pod through a listener the test can close and reopen on the same
// address: the pod's server restarting under a live port-forward.
func restartingPod(t *testing.T, e *env, name string) *faultProxy {
	t.Helper()
	p := startFaultProxy(t, e.hash.Addr())
	e.addPod(devcluster.Pod{Name: name, Ports: map[int32]string{hashPort: p.Addr()}})
	return p
}

// listenerRestart runs the scenario users report with containerd against
// a running forward: a transfer, the pod's listener closes, a connection
// comes meanwhile (the kubelet's dial is refused), the listener reopens. It
// reports whether the same forward then still carries a transfer.
// wait is how long the session gets to end after the refusal: long where
// it must end (client-go's close can take seconds on a loaded machine),
// short where it must not.
func listenerRestart(t *testing.T, pod *faultProxy, dial func() (net.Conn, error), ended func(time.Duration) bool, wait time.Duration) bool {
	t.Helper()
	if _, err := transferAll(t, 1, dial, 1<<20, 1<<20); err != nil {
		t.FailNow()
	}
	pod.closeListener()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Logf("write while the listener is down: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(faultSlack))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !isEOFOrReset(err) {
		t.Fatalf("a connection while the pod's listener is down: %d bytes, %v", n, err)
	}
	_ = c.Close()
	pod.reopen()
	if ended(wait) {
		return false
	}
	c, err = dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = transfer(t, c, faultPayload, faultPayload)
	return err == nil
}

func isEOFOrReset(err error) bool {
	return err != nil && (err.Error() == "EOF" || strings.Contains(err.Error(), "reset by peer"))
}

// TestPodListenerRestart: with client-go straight to the kubelet, and
// through the gateway by default, the kubelet's "connection refused"
// message ends the whole session (client-go closes it on any error-stream
// text). With --kubelet-forward-error=reset the gateway resets that pair
// instead, and the same ForwardPorts (and the same kubectl 1.33 process)
// carries the next connection once the listener is back.
func TestPodListenerRestart(t *testing.T) {
	const endWait, surviveWait = 30 * time.Second, 3 * time.Second
	logs := captureLogs(t)
	eMsg := newEnv(t)
	eReset := newEnv(t, func(o *options.Options) { o.Reconnect.ForwardError = options.ForwardErrorReset })

	t.Run("client-go straight to the kubelet: the session ends", func(t *testing.T) {
		pod := restartingPod(t, eMsg, "flaky")
		f := eMsg.cluster.Files
		cfg := &rest.Config{Host: "https://" + eMsg.cluster.Kubelet.Addr(), TLSClientConfig: rest.TLSClientConfig{
			CertFile: f.KubeletClientCert, KeyFile: f.KubeletClientKey, CAFile: f.CA}}
		u := &url.URL{Scheme: "https", Host: eMsg.cluster.Kubelet.Addr(), Path: "/portForward/default/flaky"}
		fw := startForward(t, dialer(t, dialSPDY, cfg, u), hashPort)
		if listenerRestart(t, pod, fw.dial, endedWithin(t, fw), endWait) {
			t.Fatal("the direct session survived a refused forward; client-go closes it on any error-stream text")
		}
	})

	for _, tt := range []struct {
		name    string
		e       *env
		survive bool
	}{
		{name: "through the gateway, --kubelet-forward-error=message: the session ends", e: eMsg},
		{name: "through the gateway, --kubelet-forward-error=reset: the session survives", e: eReset, survive: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
				name := "flaky-" + string(kind)
				pod := restartingPod(t, tt.e, name)
				fw := startForward(t, dialer(t, kind, tt.e.cfg, tt.e.pfURL("", name)), hashPort)
				wait := endWait
				if tt.survive {
					wait = surviveWait
				}
				if got := listenerRestart(t, pod, fw.dial, endedWithin(t, fw), wait); got != tt.survive {
					t.Fatalf("%s: the session survived: %v, want %v", kind, got, tt.survive)
				}
				fw.stop()
			}
		})
	}

	t.Run("kubectl 1.33 through the gateway, --kubelet-forward-error=reset: the same process goes on", func(t *testing.T) {
		bin := kubectlBinary(t, 33)
		pod := restartingPod(t, eReset, "flaky-kubectl")
		addr, run, err := eReset.kubectlPortForward(t, bin, "flaky-kubectl", hashPort)
		if err != nil {
			t.Fatal(err)
		}
		dial := func() (net.Conn, error) { return net.Dial("tcp", addr) }
		if !listenerRestart(t, pod, dial, run.Wait, surviveWait) {
			t.Fatalf("kubectl exited: %v\nstderr:\n%s", run.WaitErr, run.Stderr)
		}
		run.Kill()
	})

	// The kubelet's message is kept for the record either way.
	n := 0
	for _, fl := range forwardLogs(logs.String()) {
		if fl.outcome == "kubelet_error" && strings.HasPrefix(fl.message, "error forwarding port 7000 to pod flaky-") &&
			strings.Contains(fl.message, "failed to connect to localhost:7000 inside namespace") {
			n++
		}
	}
	if n < 4 {
		t.Errorf("%d forwarded connections logged the kubelet's refusal, want at least 4 (one per gateway case)", n)
	}
}

// endedWithin returns a check that ForwardPorts ended with the
// lost-connection error within d.
func endedWithin(t *testing.T, fw *forward) func(time.Duration) bool {
	return func(d time.Duration) bool {
		select {
		case err := <-fw.done:
			if !errors.Is(err, portforward.ErrLostConnectionToPod) {
				t.Errorf("ForwardPorts: %v, want %v", err, portforward.ErrLostConnectionToPod)
			}
			fw.done <- err
			return true
		case <-time.After(d):
			return false
		}
	}
}
