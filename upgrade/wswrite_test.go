package upgrade

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"

	"github.com/pfgateway/pfgateway/netconn"
)

// wsWriterPair upgrades a gorilla client over real TLS, with netconn under
// the server's side as the gateway's listener has it, to a wsConn pinging
// every pingEvery.
func wsWriterPair(t *testing.T, pingEvery time.Duration) (*wsConn, *gwebsocket.Conn) {
	t.Helper()
	conns := make(chan *wsConn, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if ws, err := newUpgrader("test").Upgrade(w, req, nil); err == nil {
			conns <- newWSConn(ws, pingEvery, time.Hour)
		}
	}))
	srv.Listener = netconn.Listener{Listener: srv.Listener}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	d := gwebsocket.Dialer{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig}
	client, resp, err := d.Dial("wss"+strings.TrimPrefix(srv.URL, "https"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = client.Close() })
	c := <-conns
	t.Cleanup(func() { _ = c.Close() })
	if c.wr.held == nil {
		t.Fatal("the tunnel's connection is not over a netconn.Conn: its header records cannot be joined")
	}
	return c, client
}

// TestWSWriter: messages of every length class (7-bit, 16-bit and 64-bit
// lengths, around TLS's 16 KiB records and the joined rest's bound) reach
// a gorilla client whole and in order while pings and pongs are written
// between them from other goroutines; Close ends with code 1000.
func TestWSWriter(t *testing.T) {
	c, client := wsWriterPair(t, 2*time.Millisecond)
	sizes := []int{0, 1, 125, 126, 127, 1000, 1024, 1025, 16383, 16384, 16385, 17408, 17409, 32768, 32776, 65535, 65536, 100000, frameBufSize}
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs [][]byte
	for range 20 {
		for _, n := range sizes {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			msgs = append(msgs, p)
		}
	}
	var pings, pongs atomic.Int64
	client.SetPingHandler(func(string) error { pings.Add(1); return nil })
	client.SetPongHandler(func(d string) error {
		if d != "pong?" {
			return fmt.Errorf("pong payload %q", d)
		}
		pongs.Add(1)
		return nil
	})
	read := make(chan error, 1)
	go func() {
		for i, want := range msgs {
			typ, got, err := client.ReadMessage()
			if err != nil {
				read <- fmt.Errorf("message %d (%d bytes): %w", i, len(want), err)
				return
			}
			if typ != gwebsocket.BinaryMessage || !bytes.Equal(got, want) {
				read <- fmt.Errorf("message %d: type %d, %d bytes, want binary, %d bytes, equal", i, typ, len(got), len(want))
				return
			}
		}
		_, _, err := client.ReadMessage()
		read <- err
	}()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // the reader's answers, as a client's pings would cause
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				c.onPing([]byte("pong?"))
			}
		}
	}()
	for i, p := range msgs {
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write of message %d: %d, %v", i, n, err)
		}
	}
	close(stop)
	wg.Wait()
	_ = c.Close()
	if _, err := c.Write([]byte("after the close")); !errors.Is(err, gwebsocket.ErrCloseSent) {
		t.Fatalf("a write after the close frame: %v, want %v", err, gwebsocket.ErrCloseSent)
	}
	select {
	case err := <-read:
		var ce *gwebsocket.CloseError
		if !errors.As(err, &ce) || ce.Code != gwebsocket.CloseNormalClosure {
			t.Fatalf("the client's read: %v, want every message, then close 1000", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not read every message")
	}
	if pings.Load() == 0 || pongs.Load() == 0 {
		t.Fatalf("%d pings and %d pongs between the messages, want some of each", pings.Load(), pongs.Load())
	}
}

// TestWSWriterDeadlines: a control frame gives up waiting behind a stuck
// message at its deadline; the relay's write deadline ends a stuck message,
// and every write after it fails.
func TestWSWriterDeadlines(t *testing.T) {
	c, _ := wsWriterPair(t, 0) // the client never reads
	stuck := make(chan error, 1)
	go func() {
		p := make([]byte, 1<<20)
		for {
			if _, err := c.Write(p); err != nil {
				stuck <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the socket's buffers are full by now
	start := time.Now()
	if err := c.wr.writeControl(gwebsocket.PongMessage, nil, time.Now().Add(100*time.Millisecond)); !errors.Is(err, errWSWriteTimeout) {
		t.Fatalf("a pong behind a stuck message: %v, want %v", err, errWSWriteTimeout)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 5*time.Second {
		t.Fatalf("the pong waited %v for its 100 ms", d)
	}
	if err := c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stuck:
		t.Fatalf("the stuck message ended before its deadline applied: %v", err)
	case <-time.After(200 * time.Millisecond):
		// A message being written keeps its own deadline (none): only
		// the next one is bounded. Closing ends the stuck one.
	}
	_ = c.raw.Close()
	if err := <-stuck; err == nil {
		t.Fatal("the stuck message ended without an error")
	}
	if _, err := c.Write([]byte("after")); err == nil {
		t.Fatal("a write after a failed one succeeded")
	}
}
