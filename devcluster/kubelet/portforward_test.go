package kubelet

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	clientpf "k8s.io/client-go/tools/portforward"
)

const transferSize = 8 << 20

var v4Protocols = []string{"v4.channel.k8s.io", "v4.base64.channel.k8s.io"}

// TestTransfer moves 8 MiB both ways through each client transport.
func TestTransfer(t *testing.T) {
	for _, dk := range spdyDialers {
		t.Run(dk.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			local, _ := startForward(t, dk.new(t, f, f.url("/portForward/default/demo")), echoPort)
			c, err := net.Dial("tcp", local)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			echoRoundTrip(t, c, transferSize)

			// Half-close travels client → kubelet → pod (CloseWrite), the
			// echo server closes, and EOF comes back well before the
			// linger timeout would have closed the forward.
			start := time.Now()
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
				t.Fatalf("after half-close: read %d bytes, err %v", n, err)
			}
			if d := time.Since(start); d > 900*time.Millisecond {
				t.Errorf("EOF after half-close took %v; CloseWrite did not reach the pod", d)
			}
		})
	}
	for _, proto := range v4Protocols {
		t.Run("websocket-"+proto, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			c, _, err := dialV4(f, "/portForward/default/demo/"+podUID, "port="+strconv.Itoa(echoPort), proto)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.ws.SetReadDeadline(time.Now().Add(60 * time.Second))
			echoRoundTrip(t, c, transferSize)
			if s := c.errText.String(); s != "" {
				t.Errorf("error channel: %q", s)
			}
		})
	}
}

// TestManyConnectionsOneSession forwards several connections concurrently
// through one session, as a browser behind kubectl port-forward does.
func TestManyConnectionsOneSession(t *testing.T) {
	for _, dk := range spdyDialers {
		t.Run(dk.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			local, _ := startForward(t, dk.new(t, f, f.url("/portForward/default/demo")), echoPort)
			errc := make(chan error, 8)
			for range 8 {
				go func() {
					c, err := net.Dial("tcp", local)
					if err != nil {
						errc <- err
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(30 * time.Second))
					msg := []byte("hello through the kubelet")
					if _, err := c.Write(msg); err != nil {
						errc <- err
						return
					}
					buf := make([]byte, len(msg))
					_, err = io.ReadFull(c, buf)
					if err == nil && string(buf) != string(msg) {
						err = errors.New("echo mismatch: " + string(buf))
					}
					errc <- err
				}()
			}
			for range 8 {
				if err := <-errc; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestForwardError checks that a port nobody listens on, mapped or not,
// yields containerd's dial error on the error stream, for every transport.
func TestForwardError(t *testing.T) {
	ports := []struct {
		name string
		port int
	}{{"refused", refusedPort}, {"unmapped", unknownPort}}
	for _, p := range ports {
		want := "failed to connect to localhost:" + strconv.Itoa(p.port) + ` inside namespace "` + podUID + `"`
		check := func(t *testing.T, msg string) {
			t.Helper()
			if !strings.Contains(msg, "error forwarding port "+strconv.Itoa(p.port)+" to pod demo_default") ||
				!strings.Contains(msg, want) || !strings.Contains(msg, "connect: connection refused") {
				t.Errorf("error stream = %q, want the kubelet's wrapping of %q ... connection refused", msg, want)
			}
		}
		for _, dk := range spdyDialers {
			t.Run(p.name+"/"+dk.name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				check(t, forwardError(t, dk.new(t, f, f.url("/portForward/default/demo")), p.port))

				// client-go's PortForwarder drops the session on an error
				// message, so ForwardPorts returns.
				local, errc := startForward(t, dk.new(t, f, f.url("/portForward/default/demo")), p.port)
				c, err := net.Dial("tcp", local)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				select {
				case err := <-errc:
					if !errors.Is(err, clientpf.ErrLostConnectionToPod) {
						t.Errorf("ForwardPorts = %v, want ErrLostConnectionToPod", err)
					}
				case <-time.After(10 * time.Second):
					t.Error("ForwardPorts did not return after the error")
				}
			})
		}
		for _, proto := range v4Protocols {
			t.Run(p.name+"/websocket-"+proto, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				c, _, err := dialV4(f, "/portForward/default/demo", "port="+strconv.Itoa(p.port), proto)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				check(t, c.errorText())
			})
		}
	}
}

// TestPodChangesMidSession: an open session sees SetPod and DeletePod on
// its next forwarded connection.
func TestPodChangesMidSession(t *testing.T) {
	for _, dk := range spdyDialers {
		t.Run(dk.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			conn := dialSession(t, dk.new(t, f, f.url("/portForward/default/demo")))
			defer conn.Close()
			if msg := forwardErrorOn(t, conn, unknownPort, 1); !strings.Contains(msg, "connection refused") {
				t.Errorf("unmapped port: error stream %q", msg)
			}
			// Same UID, port now mapped: a container restart with a new port.
			f.k.SetPod(Pod{Namespace: "default", Name: "demo", UID: podUID, Ports: map[int32]string{unknownPort: startEcho(t)}})
			if msg := forwardErrorOn(t, conn, unknownPort, 2); msg != "" {
				t.Errorf("remapped port: error stream %q", msg)
			}
			// New UID: the pod was recreated; the session's pod is gone.
			f.k.SetPod(Pod{Namespace: "default", Name: "demo", UID: "uid-2", Ports: map[int32]string{unknownPort: startEcho(t)}})
			if msg := forwardErrorOn(t, conn, unknownPort, 3); !strings.Contains(msg, "failed to find sandbox") {
				t.Errorf("recreated pod: error stream %q", msg)
			}
			f.k.DeletePod("default", "demo")
			if msg := forwardErrorOn(t, conn, echoPort, 4); !strings.Contains(msg, "failed to find sandbox") {
				t.Errorf("deleted pod: error stream %q", msg)
			}
		})
	}
}
