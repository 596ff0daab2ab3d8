package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/spdystream"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"

	"github.com/pfgateway/pfgateway/devcluster/hashpod"
)

// The soak pod's ports (pod default/soak).
const (
	hashPort      = 9000 // devcluster/hashpod: up and down bytes, SHA-256 back
	echoPort      = 9001 // echoPod
	forbiddenPort = 9002 // echoPod too, but the gateway policy forbids it
	closedPort    = 9999 // in the pod spec, nothing listens
	maxErrorText  = 4 << 10
)

// session is one client-go port-forward connection to a gateway: the same
// httpstream.Connection kubectl's PortForwarder holds (SPDY or the
// SPDY-over-WebSocket tunnel), with streams created here rather than behind
// a local listener, so that every error-stream message can be checked.
type session struct {
	conn   httpstream.Connection
	gw     *gateway
	proto  string
	closed atomic.Bool // the client closed it on purpose (faultSessionClose)
	// creating is held (read) while a connection creates its streams and
	// (write) to close the session: client-go registers a stream only once
	// its reply came, and its Close resets only registered streams, so a
	// stream still waiting for its reply would be left in spdystream's map
	// and keep the closed connection's socket open for good.
	creating sync.RWMutex
	nextID   *atomic.Int64
	// lost is closed when the connection's CloseChan fired without the
	// client closing it (client-go's ErrLostConnectionToPod), at lostAt.
	lost   chan struct{}
	lostAt time.Time
	// hitAt (unix ns) is the end of the last connection a backend fault
	// failed; survived: a clean connection began after it.
	hitAt    atomic.Int64
	survived atomic.Bool
}

// result is one forwarded connection's outcome.
type result struct {
	fault   fault
	class   string // classOK, a fault's name, classSessionClosed or classUnexpected
	err     error  // what was unexpected
	total   time.Duration
	setup   time.Duration // until both streams were created
	payload int64         // bytes checked, both directions
	proto   string
	gw      string
}

const (
	classOK            = "ok"
	classSessionClosed = "session-closed" // in flight when its session was closed by the client
	classUnexpected    = "unexpected"
)

// run runs one forwarded connection with fault f and classifies it; bf
// (nil without backend faults) explains failures that a backend fault
// caused.
func (s *session) run(f fault, rng *rand.Rand, maxPayload int, timeout time.Duration, bf *backendFaults) result {
	start := time.Now()
	r := result{fault: f, proto: s.proto, gw: s.gw.name}
	port := hashPort
	switch f {
	case faultNone:
		if rng.IntN(2) == 0 {
			port = echoPort
		}
	case faultClientReset, faultPodClose, faultSessionClose:
		port = echoPort
	case faultNotListening:
		port = closedPort
	case faultForbidden:
		port = forbiddenPort
	}
	err := func() error {
		errS, msg, dataS, err := s.streams(port)
		r.setup = time.Since(start)
		if errS == nil {
			return err
		}
		if err != nil {
			defer s.conn.RemoveStreams(errS)
			// The kubelet replies to a stream in its frame worker after
			// handing it to the pair's goroutine, which may dial, fail and
			// reset the data stream first: then client-go's CreateStream
			// fails with "Stream reset" and the message still arrives, as
			// on a direct connection. With an early reply the gateway
			// answers first and this does not happen.
			if f == faultNotListening && errors.Is(err, spdystream.ErrReset) {
				return s.checkMessage(f, port, waitMessage(msg, timeout))
			}
			_ = errS.Reset()
			return s.quiet(msg, fmt.Errorf("creating the data stream: %w", cut(err)), bf)
		}
		defer s.conn.RemoveStreams(errS, dataS)
		// Bound the whole connection: a reset unblocks every read and write.
		var timedOut atomic.Bool
		t := time.AfterFunc(timeout, func() { timedOut.Store(true); _ = dataS.Reset(); _ = errS.Reset() })
		defer t.Stop()
		n, err := s.exchange(f, port, dataS, errS, rng, maxPayload)
		r.payload = n
		if err == nil {
			err = s.checkMessage(f, port, <-msg)
		} else {
			err = s.quiet(msg, cut(err), bf)
		}
		if timedOut.Load() {
			err = fmt.Errorf("not done within %s: %v", timeout, err)
		}
		return err
	}()
	end := time.Now()
	r.total = end.Sub(start)
	if err == nil && s.hitAt.Load() != 0 && start.UnixNano() > s.hitAt.Load() {
		s.survived.Store(true)
	}
	victim := ""
	if err != nil && !s.closed.Load() {
		victim = s.victim(err, start, end, bf)
	}
	switch {
	case f == faultSessionClose && errors.Is(err, errClosedByUs):
		r.class = f.String()
	case err != nil && s.closed.Load():
		r.class = classSessionClosed
	case victim != "":
		r.class = victim
		if s.gw.reconnects {
			s.hitAt.Store(end.UnixNano())
			s.survived.Store(false)
		}
	case err != nil:
		where := bf.describe(start) + " to" + bf.describe(end)
		if s.isLost() {
			where += "; the gateway ended the session" + bf.describe(s.lostAt)
		}
		r.class, r.err = classUnexpected, fmt.Errorf("%s %s port %d fault %s%s: %w", s.gw.name, s.proto, port, f, where, err)
	case f == faultNone:
		r.class = classOK
	default:
		r.class = f.String()
	}
	return r
}

// streams creates a connection's error and data streams unless the session
// is closed; errS is nil when the error stream could not be created.
func (s *session) streams(port int) (errS httpstream.Stream, msg <-chan string, dataS httpstream.Stream, err error) {
	s.creating.RLock()
	defer s.creating.RUnlock()
	if s.closed.Load() {
		return nil, nil, nil, errClosedSession
	}
	// requestIDs count from 0 per session, as client-go's do.
	id := strconv.FormatInt(s.nextID.Add(1)-1, 10)
	if errS, msg, err = s.errorStream(port, id); err != nil {
		return nil, nil, nil, fmt.Errorf("creating the error stream: %w", cut(err))
	}
	dataS, err = s.dataStream(port, id)
	return errS, msg, dataS, err
}

// close closes the session once no connection is creating streams on it.
func (s *session) close() {
	s.creating.Lock()
	s.closed.Store(true)
	s.creating.Unlock()
	_ = s.conn.Close()
}

// errorStream creates the error stream, half-closes it and reads it to its
// end into msg, as client-go's handleConnection does.
func (s *session) errorStream(port int, id string) (httpstream.Stream, <-chan string, error) {
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, id)
	errS, err := s.create(h)
	if err != nil {
		return nil, nil, err
	}
	_ = errS.Close()
	msg := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(errS, maxErrorText))
		msg <- string(b)
	}()
	return errS, msg, nil
}

// dataStream creates the data stream of request id.
func (s *session) dataStream(port int, id string) (httpstream.Stream, error) {
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, id)
	return s.create(h)
}

func waitMessage(msg <-chan string, d time.Duration) string {
	select {
	case m := <-msg:
		return m
	case <-time.After(d):
		return "(no end of the error stream within " + d.String() + ")"
	}
}

// hashExchange sends up bytes to the hash pod on dataS and reads down
// bytes back, both checked by their SHA-256, then ends the stream.
func hashExchange(dataS httpstream.Stream, up, down int, seed uint64) error {
	if _, err := hashpod.Exchange(streamConn{dataS}, int64(up), int64(down), seed); err != nil {
		return err
	}
	_ = dataS.Close()
	return expectEOF(dataS)
}

// exchange moves the connection's bytes and checks them; it returns the
// payload bytes checked.
func (s *session) exchange(f fault, port int, dataS, errS httpstream.Stream, rng *rand.Rand, maxPayload int) (int64, error) {
	switch {
	case f == faultNotListening || f == faultForbidden:
		// The refusal resets the data stream: no byte may arrive.
		b, _ := io.ReadAll(io.LimitReader(dataS, 1<<10))
		if len(b) != 0 {
			return 0, fmt.Errorf("%d bytes on the data stream of a refused connection", len(b))
		}
		return 0, nil
	case port == hashPort:
		up, down := logSize(rng, maxPayload), logSize(rng, maxPayload)
		if err := hashExchange(dataS, up, down, rng.Uint64()); err != nil {
			return 0, err
		}
		return int64(up + down), nil
	}
	n := max(logSize(rng, maxPayload), 2)
	k := n
	if f == faultPodClose {
		k = rng.IntN(n)
	}
	data := randomBytes(rng, n)
	werr := make(chan error, 1)
	go func() {
		_, err := dataS.Write(echoHeader(n, k))
		switch {
		case err != nil:
		case f == faultClientReset || f == faultSessionClose:
			// Part of the payload, then the fault, mid-transfer.
			if _, err = dataS.Write(data[:n/2]); err == nil {
				if f == faultClientReset {
					_ = dataS.Reset()
					_ = errS.Reset()
				} else {
					s.close()
				}
			}
		default:
			if _, err = dataS.Write(data); err == nil {
				err = dataS.Close()
			}
		}
		werr <- err
	}()
	if f == faultClientReset || f == faultSessionClose {
		// Drain the echo while the writer works: a stream nobody reads
		// stops the client's whole spdystream connection once 50 of its
		// frames are queued, replies to other streams' creation included.
		drained := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, dataS); close(drained) }() // ends with the reset
		<-werr
		<-drained
		if f == faultSessionClose {
			return 0, errClosedByUs
		}
		return 0, nil
	}
	got := make([]byte, k)
	if _, err := io.ReadFull(dataS, got); err != nil {
		return 0, abort(dataS, werr, fmt.Errorf("reading the echo (%d of %d bytes sent): %w", k, n, err))
	}
	if !bytes.Equal(got, data[:k]) {
		return 0, abort(dataS, werr, fmt.Errorf("the echo of %d bytes differs from what was sent", k))
	}
	if err := expectEOF(dataS); err != nil {
		return 0, abort(dataS, werr, err)
	}
	if err := <-werr; err != nil {
		return 0, fmt.Errorf("writing %d bytes: %w", n, err)
	}
	return int64(n + k), nil
}

var (
	// errClosedByUs ends the connection that closed its own session.
	errClosedByUs = errors.New("session closed by the client")
	// errClosedSession: the session was closed before this connection began.
	errClosedSession = errors.New("session closed before the connection")
)

// abort resets the data stream, which unblocks the writer (and takes the
// stream out of spdystream's map, which a closing connection waits on),
// waits for the writer and returns err.
func abort(dataS httpstream.Stream, werr <-chan error, err error) error {
	_ = dataS.Reset()
	<-werr
	return err
}

// checkMessage compares the error stream's text with what f must produce.
func (s *session) checkMessage(f fault, port int, got string) error {
	want := ""
	switch f {
	case faultNotListening:
		want = notListeningMsg
	case faultForbidden:
		want = forbiddenMsg
	case faultClientReset:
		return nil // the streams are reset on our side: nothing can be read
	}
	if got != want {
		err := fmt.Errorf("error stream says %q, want %q", got, want)
		switch {
		case got == "":
			err = fmt.Errorf("%w: %w", errCut, err) // both streams reset: no text
		case s.gw.reconnects && isShutdownText(got):
			err = fmt.Errorf("%w: %w", errKubeletText, err)
		}
		return err
	}
	return nil
}

// The exact texts the faults produce: the test kubelet words a refused dial
// as containerd does and cri-streaming prefixes it; the policy's denial is
// policy.Admission.PortDenial's.
var (
	notListeningMsg = fmt.Sprintf("error forwarding port %d to pod %s_default, uid %s: failed to connect to localhost:%d inside namespace %q: dial tcp4 127.0.0.1:%d: connect: connection refused",
		closedPort, podName, podUID, closedPort, podUID, closedPort)
	forbiddenMsg = fmt.Sprintf("pfgateway policy forbids port %d on pod default/%s for user %s (no rule allows it)", forbiddenPort, podName, userName)
)

// expectEOF reads r to its end and fails if anything more came.
func expectEOF(r io.Reader) error {
	var b [1]byte
	n, err := io.ReadFull(r, b[:])
	if n > 0 {
		return errors.New("bytes after the end of the exchange")
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("waiting for the end of the stream: %w", err)
}

// logSize is a size between 1 and max, uniform in its logarithm, so small
// exchanges (one frame) and large ones (many) are both common.
func logSize(rng *rand.Rand, max int) int {
	return int(math.Exp(rng.Float64() * math.Log(float64(max))))
}

// noise is what echo payloads are cut from, at a random offset.
var noise = func() []byte {
	b := make([]byte, 2<<20)
	r := rand.NewChaCha8([32]byte{'s', 'o', 'a', 'k'})
	_, _ = r.Read(b)
	return b
}()

func randomBytes(rng *rand.Rand, n int) []byte {
	if n > len(noise)/2 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	off := rng.IntN(len(noise) - n)
	return noise[off : off+n]
}

// streamConn lets hashpod.Exchange, written for net.Conn, run on a stream.
// Close resets the stream, which is what Exchange wants when it fails.
type streamConn struct{ httpstream.Stream }

func (c streamConn) Close() error                   { return c.Stream.Reset() }
func (streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (streamConn) SetDeadline(time.Time) error      { return nil }
func (streamConn) SetReadDeadline(time.Time) error  { return nil }
func (streamConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = streamConn{}
