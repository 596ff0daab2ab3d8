package netconn

import (
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// readIdle reads r as the relay does: with a short read deadline, and on
// a timeout waiting in WaitReadable. It returns what it read and how often
// it waited.
func readIdle(c *Conn, r io.Reader, want int, waited chan<- struct{}) ([]byte, int, error) {
	var got []byte
	buf := make([]byte, 20000)
	waits := 0
	for len(got) < want {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := r.Read(buf)
		_ = c.SetReadDeadline(time.Time{})
		got = append(got, buf[:n]...)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			waits++
			select {
			case waited <- struct{}{}:
			default:
			}
			if err := c.WaitReadable(); err != nil {
				return got, waits, err
			}
		case err != nil:
			return got, waits, err
		}
	}
	return got, waits, nil
}

// TestIdleReadsThroughTLS: through crypto/tls, a read that times out
// leaves the TLS connection usable, even in the middle of a record, and
// every byte written in chunks of any size (so records arrive in pieces)
// is read back after the waits in WaitReadable.
func TestIdleReadsThroughTLS(t *testing.T) {
	client, server := pipe(t, true)
	c := Of(client)
	if c == nil || !c.CanIdle() {
		t.Fatal("no idle-capable Conn under the client")
	}

	const size = 4 << 20
	payload := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	waited := make(chan struct{}, 1)
	var pauses atomic.Int32
	go func() {
		for p := payload; len(p) > 0; {
			k := min(len(p), 1+rng.IntN(40000))
			if _, err := server.Write(p[:k]); err != nil {
				return
			}
			p = p[k:]
			if rng.IntN(8) == 0 {
				// Let the reader run dry, time out and wait, wherever
				// the record boundaries fell.
				select {
				case <-waited:
				default:
				}
				select {
				case <-waited:
					pauses.Add(1)
				case <-time.After(5 * time.Second):
				}
			}
		}
	}()
	got, waits, err := readIdle(c, client, size, waited)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("read %d bytes that differ from the %d written", len(got), size)
	}
	if waits == 0 || pauses.Load() == 0 {
		t.Errorf("the reader waited %d times, %d of them at the writer's pauses: the test did not exercise WaitReadable", waits, pauses.Load())
	}
	t.Logf("%d waits, %d at the writer's pauses", waits, pauses.Load())
}

// TestWaitReadableEnds: a reader waiting for an idle connection wakes when
// the peer closes it (the read then says EOF) and when it is closed here
// (the read then fails), so a parked session always ends.
func TestWaitReadableEnds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		close   func(client, server io.Closer)
		wantEOF bool
	}{
		{"peer closes", func(_, server io.Closer) { server.Close() }, true},
		{"closed here", func(client, _ io.Closer) { client.Close() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := pipe(t, true)
			c := Of(client)
			done := make(chan error, 1)
			go func() {
				_, _, err := readIdle(c, client, 1, nil)
				done <- err
			}()
			time.Sleep(50 * time.Millisecond) // parked in WaitReadable by now, or soon
			tc.close(client, server)
			select {
			case err := <-done:
				if tc.wantEOF != errors.Is(err, io.EOF) || err == nil {
					t.Errorf("read after the close: %v (want EOF: %v)", err, tc.wantEOF)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the waiting reader did not wake")
			}
		})
	}
}
