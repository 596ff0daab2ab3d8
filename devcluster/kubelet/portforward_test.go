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

			// The echo server closes once it has seen EOF.
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
				t.Fatalf("after half-close: read %d bytes, err %v", n, err)
			}
		})
	}
	for _, proto := range v4Protocols {
		t.Run("websocket-"+proto, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			c, _, err := dialV4(f, "/portForward/default/demo/"+podUID, echoPort, proto)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echoRoundTrip(t, c, transferSize)
			if s := c.errText.String(); s != "" {
				t.Errorf("error channel: %q", s)
			}
		})
	}
}

// TestHalfClose: EOF from the client travels to the pod as a TCP half-close
// and the pod can still answer, whatever the timing: without CloseWrite the
// pod would only see EOF once the linger timeout closed the forward, too
// late for its answer to get through.
func TestHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // after the parallel subtests
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				io.WriteString(c, "got EOF after "+strconv.FormatInt(n, 10)+" bytes")
			}()
		}
	}()
	for _, dk := range spdyDialers {
		t.Run(dk.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.k.SetPod(Pod{Namespace: "default", Name: "demo", UID: podUID, Ports: map[int32]string{80: ln.Addr().String()}})
			local, _ := startForward(t, dk.new(t, f, f.url("/portForward/default/demo")), 80)
			c, err := net.Dial("tcp", local)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "request"); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if b, err := io.ReadAll(c); err != nil || string(b) != "got EOF after 7 bytes" {
				t.Errorf("answer %q, %v", b, err)
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

				// client-go closes the local connection without data and, on
				// an error message, drops the session so ForwardPorts returns.
				local, errc := startForward(t, dk.new(t, f, f.url("/portForward/default/demo")), p.port)
				c, err := net.Dial("tcp", local)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
					t.Errorf("local connection: %d bytes, %v; want plain EOF", n, err)
				}
				select {
				case err := <-errc:
					if !errors.Is(err, clientpf.ErrLostConnectionToPod) {
						t.Errorf("ForwardPorts = %v, want ErrLostConnectionToPod", err)
					}
				case <-time.After(5 * time.Second):
					// cri-streaming enqueues a new stream before its SYN_REPLY
					// is sent and ignores replySent; a dial that fails fast
					// can reset the data stream first. client-go then fails
					// CreateStream with "Stream reset", never reads the error
					// stream and keeps the session. Real nodes share the race.
					t.Log("ForwardPorts kept the session: data stream reset before its reply (library race)")
				}
			})
		}
		for _, proto := range v4Protocols {
			t.Run(p.name+"/websocket-"+proto, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				c, _, err := dialV4(f, "/portForward/default/demo", p.port, proto)
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

// TestPodClosesFirst documents containerd's linger: when the pod closes its
// end, the forward still waits up to a second for the client before the
// stream ends, so the client sees EOF about one second late.
func TestPodClosesFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // after the parallel subtests
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("bye"))
			c.Close()
		}
	}()
	for _, dk := range spdyDialers {
		t.Run(dk.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.k.SetPod(Pod{Namespace: "default", Name: "demo", UID: podUID, Ports: map[int32]string{80: ln.Addr().String()}})
			local, _ := startForward(t, dk.new(t, f, f.url("/portForward/default/demo")), 80)
			c, err := net.Dial("tcp", local)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 3)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "bye" {
				t.Fatalf("read %q, %v", buf, err)
			}
			start := time.Now()
			if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
				t.Fatalf("after pod close: %d bytes, %v", n, err)
			}
			if d := time.Since(start); d < DefaultForwardLinger*8/10 || d > 5*time.Second {
				t.Errorf("EOF %v after the pod closed, want about %v", d, DefaultForwardLinger)
			}
		})
	}
}

// TestIdleTimeout: StreamIdleTimeout reaches the SPDY connection.
func TestIdleTimeout(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.StreamIdleTimeout = 300 * time.Millisecond })
	// client-go's SPDY client pings every 5s, so 300ms of silence is idle.
	_, done := startForward(t, spdyDialers[0].new(t, f, f.url("/portForward/default/demo")), echoPort)
	select {
	case err := <-done:
		if !errors.Is(err, clientpf.ErrLostConnectionToPod) {
			t.Errorf("ForwardPorts = %v, want ErrLostConnectionToPod", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("idle session was not closed")
	}
}

// BenchmarkTransfer measures echo throughput through the kubelet for each
// transport: go test -run - -bench Transfer ./devcluster/kubelet/
func BenchmarkTransfer(b *testing.B) {
	const size = 4 << 20
	type opener func(b *testing.B, f *fixture) io.ReadWriter
	cases := []struct {
		name string
		open opener
	}{}
	for _, dk := range spdyDialers {
		cases = append(cases, struct {
			name string
			open opener
		}{dk.name, func(b *testing.B, f *fixture) io.ReadWriter {
			local, _ := startForward(b, dk.new(b, f, f.url("/portForward/default/demo")), echoPort)
			c, err := net.Dial("tcp", local)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			return c
		}})
	}
	cases = append(cases, struct {
		name string
		open opener
	}{"websocket-v4", func(b *testing.B, f *fixture) io.ReadWriter {
		c, _, err := dialV4(f, "/portForward/default/demo", echoPort, v4Protocols[0])
		if err != nil {
			b.Fatal(err)
		}
		c.ws.SetReadDeadline(time.Time{})
		b.Cleanup(func() { c.Close() })
		return c
	}})
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			f := newFixture(b)
			rw := tc.open(b, f)
			b.SetBytes(2 * size) // both directions
			b.ResetTimer()
			for range b.N {
				echoRoundTrip(b, rw, size)
			}
		})
	}
}
