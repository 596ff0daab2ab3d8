package e2e

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/portforward"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster/hashpod"
)

// Fault-injection settings: short enough to observe, generous enough for a
// loaded 2-core CI machine.
const (
	faultDialTimeout = time.Second     // --kubelet-dial-timeout: a hung kubelet costs this per dial
	faultCreation    = 5 * time.Second // --stream-creation-timeout: bounds a pair waiting for a redial
	faultPayload     = 4 << 20         // each way, SHA-256 checked by the hash pod
	faultSlack       = 15 * time.Second
	mLost            = "pfgateway_portforward_kubelet_connections_lost_total"
	mReconnects      = "pfgateway_portforward_kubelet_reconnects_total"
)

// faultsEnv is a gateway whose kubelet connections pass through a proxy
// the test can break.
func faultsEnv(t *testing.T, tweak ...func(*options.Options)) (*env, *faultProxy) {
	t.Helper()
	e := newEnv(t, append([]func(*options.Options){func(o *options.Options) {
		o.Kubelet.DialTimeout = faultDialTimeout
		o.Kubelet.UpgradeTimeout = 2 * faultDialTimeout
		o.Streams.CreationTimeout = faultCreation
		o.Streams.MetricsPorts = []int{hashPort}
	}}, tweak...)...)
	p := startFaultProxy(t, e.cluster.Kubelet.Addr())
	e.pointNodeAt(t, p.port())
	// The gateway resolves nodes from an informer: wait until a session's
	// kubelet connection goes through the proxy.
	eventually(t, 20*time.Second, "sessions to reach the kubelet through the proxy", func() bool {
		f, err := tryForward(dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
		if err != nil {
			t.Fatal(err)
		}
		f.stop()
		<-f.done
		return p.Accepted() > 0
	})
	e.waitIdle(t)
	return e, p
}

// expectSessionAlive fails if ForwardPorts has returned.
func expectSessionAlive(t *testing.T, f *forward, after string) {
	t.Helper()
	select {
	case err := <-f.done:
		t.Fatalf("the session ended after %s: %v", after, err)
	default:
	}
}

// expectClosedWithin opens a forwarded connection while a fault lasts and
// expects the client to close it, without data, within d.
func expectClosedWithin(t *testing.T, f *forward, d time.Duration) time.Duration {
	t.Helper()
	c, err := f.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = c.Write(hashpod.Header(1<<10, 1<<10, rand.Uint64()))
	_ = c.SetReadDeadline(start.Add(d))
	n, err := io.Copy(io.Discard, c)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the forwarded connection was still open %v into the fault", d)
	}
	if n != 0 {
		t.Fatalf("%d bytes came through a broken kubelet connection", n)
	}
	return took
}

// TestFaults breaks the gateway's kubelet connection under a live
// client-go session, for both client-go dialers: the forwarded connection
// in flight ends, the session survives, and the next forwarded connection
// moves faultPayload each way intact. Goroutines and fds come back.
func TestFaults(t *testing.T) {
	for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
		t.Run(string(kind), func(t *testing.T) {
			logs := captureLogs(t)
			e, proxy := faultsEnv(t)
			dial := dialer(t, kind, e.cfg, e.pfURL("", "hash"))
			// Warm up pools and lazily started goroutines, then count.
			f0 := startForward(t, dial, hashPort)
			if _, err := transferAll(t, 1, f0.dial, 1<<20, 1<<20); err != nil {
				t.FailNow()
			}
			f0.stop()
			<-f0.done
			e.waitIdle(t)
			base := takeBaseline(t)

			f := startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "hash")), hashPort)
			faults := []struct {
				name     string
				inFlight bool               // a download runs when the fault hits
				inject   func(t *testing.T) // the fault
				during   func(t *testing.T) // a connection opened while it lasts
				heal     func(t *testing.T)
			}{
				{name: "kubelet killed and restarted", inFlight: true, inject: func(t *testing.T) {
					if err := e.cluster.Kubelet.Restart(); err != nil {
						t.Fatal(err)
					}
				}},
				{name: "backend TCP connection cut", inFlight: true, inject: func(*testing.T) { proxy.Sever() }},
				{name: "kubelet hangs (accepts, never answers)",
					inject: func(*testing.T) { proxy.SetHang(true); proxy.Sever() },
					during: func(t *testing.T) {
						took := expectClosedWithin(t, f, faultCreation+faultSlack)
						// The redials time out (faultDialTimeout each) until the
						// creation timeout; the pair is then reset.
						if took < faultCreation-time.Second {
							t.Errorf("the pair was refused after %v, before the dials could time out", took)
						}
						t.Logf("hung kubelet: the pair was reset after %v", took.Round(time.Millisecond))
					},
					heal: func(*testing.T) { proxy.SetHang(false) }},
				{name: "kubelet down (connection refused)",
					inject: func(*testing.T) { proxy.closeListener() },
					during: func(t *testing.T) {
						took := expectClosedWithin(t, f, faultCreation+faultSlack)
						t.Logf("kubelet down: the pair was reset after %v", took.Round(time.Millisecond))
					},
					heal: func(*testing.T) { proxy.reopen() }},
			}
			for i, ft := range faults {
				var ended <-chan readEnd
				if ft.inFlight {
					c, err := f.dial()
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					var first <-chan struct{}
					first, ended = endlessDownload(t, c)
					select {
					case <-first:
					case <-time.After(faultSlack):
						t.Fatalf("%s: the download did not start", ft.name)
					}
				}
				start := time.Now()
				ft.inject(t)
				if ended != nil {
					select {
					case end := <-ended:
						t.Logf("%s: the connection in flight ended %v after the fault (%d bytes, %v)", ft.name,
							end.at.Sub(start).Round(time.Millisecond), end.n, end.err)
					case <-time.After(faultSlack):
						t.Fatalf("%s: the connection in flight outlived its kubelet connection by %v", ft.name, faultSlack)
					}
				}
				// Every fault costs the session its kubelet connection; the
				// next pair must find it gone, not race the loss.
				eventually(t, faultSlack, fmt.Sprintf("%s: the loss of the kubelet connection", ft.name), func() bool {
					return e.scrape(t).value(mLost, nil) == float64(i+1)
				})
				if ft.during != nil {
					ft.during(t)
				}
				if ft.heal != nil {
					ft.heal(t)
				}
				expectSessionAlive(t, f, ft.name)
				c, err := f.dial()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := transfer(t, c, faultPayload, faultPayload); err != nil {
					t.Fatalf("%s: the next forwarded connection failed", ft.name)
				}
				_ = c.Close()
				expectSessionAlive(t, f, ft.name)
			}
			f.stop()
			if err := <-f.done; err != nil {
				t.Errorf("ForwardPorts: %v", err)
			}
			e.waitIdle(t)

			ms := e.scrape(t)
			if got := ms.value(mLost, nil); got != 4 {
				t.Errorf("%s = %g, want 4", mLost, got)
			}
			rc := ms.series(mReconnects)
			if rc["result=success"] != 4 || rc["result=timeout"] < 1 || rc["result=dial"] != 5 {
				t.Errorf("%s:%s\nwant 4 success, 5 dial (refused), at least 1 timeout", mReconnects, formatSeries(rc))
			}
			fw := ms.series(mForwards)
			for _, k := range []string{"kubelet_disconnected", "kubelet_unreachable"} {
				if got := fw[fmt.Sprintf("outcome=%s,port=%d,protocol=%s", k, hashPort, protocolOf(kind))]; got != 2 {
					t.Errorf("%s{outcome=%s} = %g, want 2:%s", mForwards, k, got, formatSeries(fw))
				}
			}
			var lost, unreachable int
			for _, fl := range forwardLogs(logs.String()) {
				switch {
				case fl.outcome == "kubelet_disconnected" && strings.HasPrefix(fl.message, "pfgateway: lost the connection to the kubelet on node dev-node: "):
					lost++
				case fl.outcome == "kubelet_unreachable" && strings.HasPrefix(fl.message, "pfgateway: could not reconnect to the kubelet: "):
					unreachable++
				}
			}
			if lost != 2 || unreachable != 2 {
				t.Errorf("forwarded connection logs: %d lost, %d unreachable with their messages, want 2 and 2", lost, unreachable)
			}

			base.check(t, "")
		})
	}
}

// protocolOf is the protocol label of a dialer's sessions.
func protocolOf(kind dialerKind) string {
	if kind == dialTunnel {
		return "websocket"
	}
	return string(kind)
}

// TestFaultsEndingTheSession: where the gateway tells the client why on
// the error stream, client-go ends the session with that message (it
// closes its connection on any error-stream text): a lost kubelet
// connection with --kubelet-loss-message, and a pod that is gone when the
// next forwarded connection re-resolves it (always told: nothing can
// succeed any more).
func TestFaultsEndingTheSession(t *testing.T) {
	logs := captureLogs(t)
	e, proxy := faultsEnv(t, func(o *options.Options) { o.Reconnect.LossMessage = true })
	const lost = "pfgateway: lost the connection to the kubelet on node dev-node: "
	// klog quotes the message; the parsed value stops at its first quote.
	const gone = "pfgateway: could not reconnect to the kubelet: the pod is gone: pods "

	t.Run("--kubelet-loss-message", func(t *testing.T) {
		f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		first, ended := endlessDownload(t, c)
		<-first
		proxy.Sever()
		select {
		case <-ended:
		case <-time.After(faultSlack):
			t.Fatal("the connection in flight outlived its kubelet connection")
		}
		select {
		case err := <-f.done:
			if !errors.Is(err, portforward.ErrLostConnectionToPod) {
				t.Fatalf("ForwardPorts: %v, want %v", err, portforward.ErrLostConnectionToPod)
			}
		case <-time.After(faultSlack):
			t.Fatal("client-go kept its session after an error-stream message")
		}
	})

	var watched bool // the pod watch, not a re-resolve, found the pod gone
	t.Run("pod deleted while the kubelet connection was down", func(t *testing.T) {
		f := startForward(t, dialer(t, dialTunnel, e.cfg, e.pfURL("", "hash")), hashPort)
		if _, err := transferAll(t, 1, f.dial, 1<<20, 1<<20); err != nil {
			t.FailNow()
		}
		before := e.scrape(t).value(mLost, nil)
		proxy.Sever()
		eventually(t, faultSlack, "the loss of the kubelet connection", func() bool { return e.scrape(t).value(mLost, nil) > before })
		if err := e.cluster.APIServer.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), "default", "hash"); err != nil {
			t.Fatal(err)
		}
		expectClosedWithin(t, f, faultSlack)
		select {
		case err := <-f.done:
			if !errors.Is(err, portforward.ErrLostConnectionToPod) {
				t.Fatalf("ForwardPorts: %v, want %v", err, portforward.ErrLostConnectionToPod)
			}
		case <-time.After(faultSlack):
			t.Fatal("client-go kept its session after the pod was gone")
		}
		// Two paths tell the client the pod is gone, whichever comes first:
		// the pod watch (podwatch) ends the session, or the next forwarded
		// connection's re-resolve finds no pod and does not retry.
		// The client reads the error stream before the gateway has
		// recorded the session's end, and both paths may race (a re-resolve
		// counts pod_not_found while the watch closes the session): read
		// the counts once the session has ended.
		var notFound, deleted float64
		eventually(t, faultSlack, "the end of the session", func() bool {
			m := e.scrape(t)
			notFound = m.value(mReconnects, labels{"result": "pod_not_found"})
			deleted = m.value(mSessions, labels{"protocol": "websocket", "outcome": "pod_deleted"})
			return m.value(mSessions, labels{"protocol": "websocket"}) >= 1
		})
		if notFound > 1 || notFound+deleted < 1 {
			t.Errorf("%s{result=pod_not_found} = %g and %s{outcome=pod_deleted} = %g; want one of them 1 (no retry)", mReconnects, notFound, mSessions, deleted)
		}
		watched = deleted == 1
	})

	if watched {
		// The session's metric is recorded just before its log line.
		eventually(t, faultSlack, "the session's end in the log", func() bool {
			return strings.Contains(logs.String(), `outcome="pod_deleted"`)
		})
	}
	sawLost, sawGone := false, watched // the watch's log line is there (above)
	for _, fl := range forwardLogs(logs.String()) {
		sawLost = sawLost || (fl.outcome == "kubelet_disconnected" && strings.HasPrefix(fl.message, lost))
		sawGone = sawGone || (fl.outcome == "kubelet_unreachable" && strings.HasPrefix(fl.message, gone))
	}
	if !sawLost || !sawGone {
		t.Errorf("forwarded connection logs: lost %v, pod gone %v:\n%s", sawLost, sawGone, logs.String())
	}
}

// TestFaultsKubectl: the same kubectl 1.33 port-forward process outlives a
// kubelet restart under it.
func TestFaultsKubectl(t *testing.T) {
	bin := kubectlBinary(t, 33)
	e := newEnv(t)
	addr, run, err := e.kubectlPortForward(t, bin, "hash", hashPort)
	if err != nil {
		t.Fatal(err)
	}
	dial := func() (net.Conn, error) { return net.Dial("tcp", addr) }
	if _, err := transferAll(t, 1, dial, faultPayload, faultPayload); err != nil {
		t.FailNow()
	}
	if err := e.cluster.Kubelet.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, faultSlack, "the loss of the kubelet connection", func() bool { return e.scrape(t).value(mLost, nil) == 1 })
	if _, err := transferAll(t, 1, dial, faultPayload, faultPayload); err != nil {
		t.Fatalf("after the restart: %v\nkubectl stderr:\n%s", err, run.Stderr)
	}
	if run.Wait(0) {
		t.Fatalf("kubectl exited: %v\nstderr:\n%s", run.WaitErr, run.Stderr)
	}
	if got := e.scrape(t).value(mReconnects, labels{"result": "success"}); got != 1 {
		t.Errorf("%s{result=success} = %g, want 1", mReconnects, got)
	}
	run.Kill()
}
