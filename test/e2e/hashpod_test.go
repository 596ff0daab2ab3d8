package e2e

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/devcluster/hashpod"
)

// startHashPod starts the hash pod (package hashpod) for one test. It has no
// header bound: the shutdown test asks it for an endless download.
func startHashPod(t *testing.T) *hashpod.Server {
	t.Helper()
	p, err := hashpod.Start(hashpod.Options{MaxBytes: math.MaxUint64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// transfer runs one hash-pod exchange over conn with a fresh seed: it sends
// up bytes, asks for down bytes and checks every byte both ways. When conn
// can half-close, it then does so and expects a clean EOF with nothing after
// the digest. Failures are reported with t.Errorf (safe from any goroutine)
// and returned. transfer does not close conn unless the exchange fails.
func transfer(t testing.TB, conn net.Conn, up, down int64) (hashpod.Result, error) {
	res, err := doTransfer(conn, up, down)
	if err != nil {
		t.Errorf("transfer of %d up / %d down bytes: %v", up, down, err)
	}
	return res, err
}

// transferTimeout bounds one transfer: generous, since -race on 2 cores is slow.
func transferTimeout(up, down int64) time.Duration {
	return 60*time.Second + time.Duration((up+down)>>20)*time.Second
}

func doTransfer(conn net.Conn, up, down int64) (hashpod.Result, error) {
	_ = conn.SetDeadline(time.Now().Add(transferTimeout(up, down)))
	defer conn.SetDeadline(time.Time{}) //nolint:errcheck
	res, err := hashpod.Exchange(conn, up, down, rand.Uint64())
	if err != nil {
		return res, err
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return res, fmt.Errorf("half-closing: %w", err)
		}
		n, err := io.Copy(io.Discard, conn)
		if err != nil || n != 0 {
			return res, fmt.Errorf("after the digest: %d more bytes, %v; want a clean EOF", n, err)
		}
	}
	return res, nil
}

// transferAll runs n transfers at once, one per connection dial() returns,
// and reports the first failure.
func transferAll(t testing.TB, n int, dial func() (net.Conn, error), up, down int64) (time.Duration, error) {
	start := time.Now()
	errc := make(chan error, n)
	for range n {
		go func() {
			c, err := dial()
			if err != nil {
				t.Errorf("dial: %v", err)
				errc <- err
				return
			}
			defer c.Close()
			_, err = transfer(t, c, up, down)
			errc <- err
		}()
	}
	var errs []error
	for range n {
		errs = append(errs, <-errc)
	}
	return time.Since(start), errors.Join(errs...)
}

// readEnd is how an endless download ended: the bytes read and when.
type readEnd struct {
	n   int64
	at  time.Time
	err error
}

// endlessDownload asks the hash pod behind c for a download that never
// ends and reads it until the connection ends (the gateway closing the
// session). firstByte is closed once data flows; ended then gets the end.
func endlessDownload(t testing.TB, c net.Conn) (firstByte <-chan struct{}, ended <-chan readEnd) {
	t.Helper()
	if _, err := c.Write(hashpod.Header(1<<62, 1<<62, rand.Uint64())); err != nil {
		t.Fatal(err)
	}
	first, end := make(chan struct{}), make(chan readEnd, 1)
	go func() {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			end <- readEnd{0, time.Now(), err}
			return
		}
		close(first)
		n, err := io.Copy(io.Discard, c)
		end <- readEnd{n + 1, time.Now(), err}
	}()
	return first, end
}
