package upgrade

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
)

const (
	testWSPingInterval = 200 * time.Millisecond
	testWSPingTimeout  = 500 * time.Millisecond
)

// tunnelPair upgrades a test client to a pinging wsConn and reads from it
// until it fails; the read error arrives on the returned channel.
func tunnelPair(t *testing.T) (*gwebsocket.Conn, chan error) {
	t.Helper()
	readErr := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ws, err := newUpgrader("test").Upgrade(w, req, nil)
		if err != nil {
			readErr <- err
			return
		}
		c := newWSConn(ws, testWSPingInterval, testWSPingTimeout)
		go func() {
			defer c.Close()
			buf := make([]byte, 1024)
			for {
				if _, err := c.Read(buf); err != nil {
					readErr <- err
					return
				}
			}
		}()
	}))
	t.Cleanup(srv.Close)
	client, resp, err := gwebsocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = client.Close() })
	return client, readErr
}

// waitPingerGone fails if a tunnel's pinger outlives its connection.
func waitPingerGone(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		if !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "upgrade.(*wsConn).ping") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the WebSocket pinger outlived its connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLivenessWebSocketClientAnsweringPingsKeepsTheTunnel(t *testing.T) {
	client, readErr := tunnelPair(t)
	pings := make(chan struct{}, 64)
	answer := client.PingHandler()
	client.SetPingHandler(func(d string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return answer(d)
	})
	// gorilla answers pings while the application reads, as client-go's
	// tunnel always does.
	go func() {
		for {
			if _, _, err := client.NextReader(); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-readErr:
		t.Fatalf("tunnel ended while the client answered pings: %v", err)
	case <-time.After(10 * testWSPingInterval):
	}
	if len(pings) < 3 {
		t.Fatalf("the client saw %d pings in %v, want several", len(pings), 10*testWSPingInterval)
	}
}

func TestLivenessWebSocketSilentClientEndsTheTunnel(t *testing.T) {
	_, readErr := tunnelPair(t) // the client never reads, so never answers
	start := time.Now()
	bound := testWSPingInterval + testWSPingTimeout + 3*time.Second // generous: CI runs everything at once
	select {
	case err := <-readErr:
		if !errors.Is(err, ErrWebSocketPingTimeout) {
			t.Fatalf("read error %v, want %v", err, ErrWebSocketPingTimeout)
		}
		if d := time.Since(start); d < testWSPingInterval+testWSPingTimeout-testWSPingTimeout/4-10*time.Millisecond {
			t.Fatalf("ended after %v, sooner than the client's allowance", d)
		}
	case <-time.After(bound):
		t.Fatalf("a client that answered no ping kept its tunnel past %v", bound)
	}
	waitPingerGone(t)
}

// TestTunnelReadsAcrossTimeouts: a read that times out on the relay's
// deadline (idle reads) loses nothing, even inside a frame, and is not a
// liveness failure; once the client has been silent past the liveness
// allowance, a read fails with ErrWebSocketPingTimeout, whatever deadline
// the relay asked for.
func TestTunnelReadsAcrossTimeouts(t *testing.T) {
	conns := make(chan *wsConn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if ws, err := newUpgrader("test").Upgrade(w, req, nil); err == nil {
			conns <- newWSConn(ws, testWSPingInterval, testWSPingTimeout)
		}
	}))
	defer srv.Close()
	client, resp, err := gwebsocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	defer client.Close()
	c := <-conns
	defer c.Close()
	raw := client.NetConn()
	go func() { _, _ = io.Copy(io.Discard, raw) }() // the gateway's pings

	buf := make([]byte, 1024)
	var got []byte
	timesOut := func(step string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...) // bytes of the frame at hand come with the timeout
		if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrWebSocketPingTimeout) {
			t.Fatalf("%s: Read = %d, %v; want the relay's timeout", step, n, err)
		}
	}
	timesOut("nothing sent")
	const payload = "split across two timeouts"
	frame := keyedFrame(0x82, []byte(payload), [4]byte{5, 6, 7, 8})
	for _, part := range [][2]int{{0, 1}, {1, 9}} { // inside the header, then the payload
		if _, err := raw.Write(frame[part[0]:part[1]]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		timesOut(fmt.Sprintf("after %d bytes of the frame", part[1]))
	}
	if _, err := raw.Write(frame[9:]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Time{})
	for len(got) < len(payload) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("the frame's rest sent: %v", err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != payload {
		t.Fatalf("read %q, want %q", got, payload)
	}

	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(time.Minute)) // later than the liveness allowance
	if _, err := c.Read(buf); !errors.Is(err, ErrWebSocketPingTimeout) {
		t.Fatalf("a silent client: Read error %v, want %v", err, ErrWebSocketPingTimeout)
	}
	if d := time.Since(start); d > testWSPingInterval+testWSPingTimeout+3*time.Second {
		t.Fatalf("a silent client was given %v", d)
	}
}
