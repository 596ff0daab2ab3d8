// Package relay carries a port-forward SPDY/3.1 connection between a client
// and a kubelet frame by frame, so the gateway sees every forwarded
// connection (an error + data stream pair per requestID) while data still
// costs about as much as a byte splice.
//
// The gateway is the server on the client's connection and the client on
// the kubelet's: it decodes only control frames (each side with its own
// header-compression context), rewrites stream ids between its own two id
// spaces, answers pings on each side, and passes DATA frames through from
// its read buffer. docs/stream-relay.md explains each choice against the
// spdystream, cri-streaming and client-go sources.
//
// This is hand-written protocol code because no library relays SPDY
// without terminating it: terminating both sides with spdystream costs
// about four times the CPU of a splice and queues data without bound.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options.
const (
	DefaultCreationTimeout = 30 * time.Second // cri-streaming's streamCreationTimeout
	DefaultMaxStreams      = 512
	// DefaultKubeletPingTimeout is Options.KubeletPingTimeout's default.
	DefaultKubeletPingTimeout = 10 * time.Second
	// pingMirrorInterval paces the pings the gateway sends the kubelet on
	// behalf of a pinging client (client-go pings every 5 or 10 s), which
	// keep the kubelet's idle timer fed as the client's pings would directly.
	pingMirrorInterval = 5 * time.Second
	// goAwayGrace bounds the write of a parting GOAWAY to a peer that may
	// not be reading.
	goAwayGrace = time.Second
)

// Options configure a Relay.
type Options struct {
	// Decide, if set, is asked about every stream the client opens.
	Decide Decide
	// Record, if set, receives one Record per forwarded connection.
	Record func(Record)
	// EarlyReply answers a valid SYN_STREAM to the client at once instead of
	// waiting for the kubelet's reply; the gateway then times the kubelet's
	// reply itself (CreationTimeout).
	EarlyReply bool
	// CreationTimeout bounds the wait for a pair's second stream when the
	// gateway owns the pair, and for the kubelet's reply after an early reply.
	CreationTimeout time.Duration
	// MaxStreams bounds the streams open at once; further SYN_STREAMs are
	// refused with RST_STREAM(REFUSED_STREAM).
	MaxStreams int
	// Payload, if set, is added the payload bytes of every DATA frame on a
	// forwarded connection's data stream, in both directions: real traffic,
	// which pings (client-go sends one every 5 or 10 s) and stream
	// bookkeeping do not feed. The session's idle timeout follows it.
	Payload *atomic.Int64
	// KubeletPingInterval is how often the gateway pings the kubelet when
	// it sent no ping for that long (pings mirrored for a pinging client
	// count); 0 sends only the mirrored ones and never times out.
	KubeletPingInterval time.Duration
	// KubeletPingTimeout is how long the echo of a ping may take before the
	// kubelet is taken for gone and the session ends (ErrKubeletPingTimeout).
	// DefaultKubeletPingTimeout when zero.
	KubeletPingTimeout time.Duration
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
	// Reconnect, if Redial is set, keeps the client's session when the
	// kubelet connection dies (redial.go); nil ends the session with it.
	Reconnect
	// Stop, if set, ends the relay with a message for the client
	// (stop.go).
	Stop *Stopper
}

// End says why Run returned.
type End struct {
	// By is the side whose connection ended first: "client" or "kubelet".
	By string
	// Err is the read error that ended it (nil for a clean EOF or GOAWAY).
	Err error
	// Protocol is set when the end was a malformed frame.
	Protocol bool
	// KubeletLosses counts kubelet connections lost while the session went
	// on, Reconnects the replacements dialed (Options.Redial).
	KubeletLosses, Reconnects int
	// Panic is what a panic on one of the relay's reader goroutines
	// carried, and Stack where it happened; the session ended with it.
	Panic any
	Stack []byte
}

// Conn is one side of a relay.
type Conn struct {
	// R is where the side's bytes are read (it may first return bytes
	// buffered before the upgrade).
	R io.Reader
	// W is where bytes to the side are written.
	W io.Writer
	// Own, if set, is where the gateway's own frames to the side (its
	// liveness pings) are written instead of W, so that a W counting the
	// session's traffic does not count them and an idle session stays idle.
	Own io.Writer
	// Close closes the connection.
	Close func() error
	// SetWriteDeadline, if set, bounds the parting GOAWAY write.
	SetWriteDeadline func(time.Time) error
	// Node names a kubelet side's node in the messages to the client.
	Node string
	// Idle, if set, is the socket under R (netconn.Conn): once the side
	// has been quiet for IdleAfter, its reader hands over to a fresh
	// goroutine with a small stack that waits for the socket (read).
	// Only for an R that survives a read timeout (crypto/tls, the
	// tunnel's own WebSocket reader; not gorilla's).
	Idle Idle
}

// Idle is the socket under a side's reads (netconn.Conn).
type Idle interface {
	// SetReadDeadline bounds the reads of R: a read that times out must
	// keep whatever R has buffered (as crypto/tls does).
	SetReadDeadline(t time.Time) error
	// WaitReadable returns once R's socket has bytes, or soon after.
	WaitReadable() error
}

// side is one of the relay's two connections.
type side struct {
	name string
	c    Conn
	dec  *decoder

	br        *FrameReader // kept while a fresh goroutine waits to read on (read)
	idleArmed time.Time    // when the read deadline of Conn.Idle was last set
	// readOn reads the side on a fresh goroutine; waitThenRead waits for
	// its bytes first. Made once per side, so that an idle session's wakes
	// allocate no closure.
	readOn, waitThenRead func()

	wmu sync.Mutex // orders writes; encoding happens under it too
	enc storedEncoder

	// Kubelet sides only, guarded by relay.mu: each kubelet connection is
	// its own id space, so a replacement starts again at 1.
	streams map[uint32]*stream // by kubelet-side id
	nextKID uint32
	pingID  uint32 // the gateway's next ping id on this connection (odd)
	lost    bool   // the connection is gone; its streams were ended
	cause   error  // why the gateway closed it (ping timeout, failed write)
	// unanswered holds the ids whose SYN_STREAM went out and whose
	// SYN_REPLY or RST has not come back (answers.go); nil when none.
	unanswered  map[uint32]struct{}
	readerEnded bool // its reader returned for good
}

func newKubeletSide(c Conn) *side {
	return &side{name: "kubelet", c: c, dec: newDecoder(), streams: map[uint32]*stream{}, nextKID: 1, pingID: 1}
}

// write sends b whole under the side's write lock.
func (s *side) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.c.W.Write(b)
	return err
}

// writeOwn sends one of the gateway's own frames (see Conn.Own).
func (s *side) writeOwn(b []byte) error {
	w := s.c.Own
	if w == nil {
		w = s.c.W
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := w.Write(b)
	return err
}

// Run relays between client and kubelet until either ends, then closes both.
func Run(client, kubelet Conn, o Options) End {
	ch := make(chan End, 1)
	Start(client, kubelet, o, func(e End) { ch <- e })
	return <-ch
}

// Start is Run without the wait: it returns at once, and done gets the End
// on the client reader's goroutine once both connections are closed. An
// idle session then has one goroutine per connection, each blocked in a
// read, and no other: its largest cost is their stacks (BENCHMARKS.md,
// idle-session memory).
func Start(client, kubelet Conn, o Options, done func(End)) {
	newRelay(client, kubelet, o).start(done)
}

func newRelay(client, kubelet Conn, o Options) *relay {
	if o.CreationTimeout <= 0 {
		o.CreationTimeout = DefaultCreationTimeout
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.KubeletPingTimeout <= 0 {
		o.KubeletPingTimeout = DefaultKubeletPingTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Reconnect = o.Reconnect.withDefaults()
	stopCtx, stop := context.WithCancel(context.Background())
	return &relay{
		o:           o,
		client:      &side{name: "client", c: client, dec: newDecoder()},
		kubelet:     newKubeletSide(kubelet),
		byClient:    map[uint32]*stream{},
		pairs:       map[string]*pair{},
		overCh:      make(chan struct{}),
		answers:     make(chan struct{}, 1),
		answerGrace: answerGrace,
		stopCtx:     stopCtx,
		stopDial:    stop,
	}
}

type result struct {
	by  *side
	err error
}

// start runs the two readers; whichever of them, a Stop or a ping timeout
// ends the session first records why (end) and closes the client
// connection under the client reader, which then tears the session down
// and calls done. No goroutine waits for them.
func (r *relay) start(done func(End)) {
	r.kwg.Add(1)
	go r.serveKubelet(r.kubelet)
	r.startLiveness()
	r.o.Stop.attach(func(msg string) { r.stopWG.Add(1); go r.stopWith(msg) })
	// A fresh goroutine: its stack holds the read and nothing of the
	// caller's, so it stays at the size a reader needs.
	var readClient func()
	readClient = func() {
		defer func() {
			// A panic ends this session, not the gateway: both
			// connections close, and the kubelet reader ends with them.
			if v := recover(); v != nil {
				err := fmt.Errorf("internal error: %v", v)
				r.end(result{r.client, err}) // no kubelet replacement, no further stop
				r.o.Stop.detach()
				r.stopLiveness()
				r.stopDial()
				r.closeBoth()
				done(End{By: r.client.name, Err: err, Panic: v, Stack: debug.Stack()})
			}
		}()
		ended, err := r.read(r.client, nil, true)
		if !ended {
			return // a fresh goroutine reads on
		}
		r.end(result{r.client, err}) // unless something ended it first
		done(r.teardown())
	}
	r.client.readOn = readClient
	go readClient()
}

// teardown ends the session once the client reader returned: both
// connections closed, every goroutine of the relay's done, every pair
// recorded.
func (r *relay) teardown() End {
	r.o.Stop.detach()
	r.mu.Lock()
	first := r.first
	kubelet, kubeletLost := r.kubelet, r.kubelet.lost
	r.mu.Unlock()
	r.stopDial()
	// Whichever reader ended first, a ping timeout is why the session ends:
	// it closed the kubelet connection.
	pingExpired := r.stopLiveness()
	if pingExpired {
		first = result{kubelet, r.pingTimeoutErr()}
	}
	if first.by == r.client && !pingExpired && !kubeletLost {
		r.awaitAnswers(kubelet) // before the GOAWAY and close (answers.go)
	}

	var gone Outcome
	var pe *protocolError
	isProto := errors.As(first.err, &pe)
	switch {
	case isProto:
		gone = OutcomeProtocolError
	case first.by == r.client:
		gone = OutcomeClientGone
	default:
		gone = OutcomeKubeletGone
	}
	// A client's GOAWAY is passed on as the kubelet would have received it
	// directly (a kubelet's was passed on by serveKubelet).
	if errors.Is(first.err, errGoAway) && first.by == r.client && !kubeletLost {
		r.goAway(kubelet, 0) // the gateway accepts no kubelet-initiated streams
	}
	_ = r.client.c.Close()
	_ = kubelet.c.Close()
	r.stopWG.Wait()
	r.dialWG.Wait()
	r.kwg.Wait()
	r.finishAll(gone)

	end := End{By: first.by.name, Protocol: isProto}
	r.mu.Lock()
	end.KubeletLosses, end.Reconnects = r.losses, r.reconnects
	end.Panic, end.Stack = r.panicked, r.panicStack
	r.mu.Unlock()
	if !errors.Is(first.err, errGoAway) && !isClosed(first.err) {
		end.Err = first.err
	}
	return end
}

// end records why the session ends unless something did already, and
// reports whether it did: the session is then ending (no kubelet
// replacement, client resets are reactions) and overCh is closed.
func (r *relay) end(res result) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ending {
		return false
	}
	r.first, r.ending = res, true
	close(r.overCh)
	return true
}

// over reports whether the session is ending.
func (r *relay) over() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ending
}

// serveKubelet reads one kubelet connection until it ends, which ends the
// session unless Options.Redial can replace the connection.
func (r *relay) serveKubelet(k *side) {
	ended := false
	defer func() {
		if ended {
			r.mu.Lock()
			k.readerEnded = true
			r.mu.Unlock()
			r.wakeAnswers()
			r.kwg.Done()
		}
	}()
	defer func() {
		// As on the client reader: the session ends, not the gateway;
		// the client reader's teardown reports it (End.Panic).
		if v := recover(); v != nil {
			r.mu.Lock()
			if r.panicked == nil {
				r.panicked, r.panicStack = v, debug.Stack()
			}
			r.mu.Unlock()
			r.end(result{k, fmt.Errorf("internal error: %v", v)})
			_ = r.client.c.Close()
			_ = k.c.Close()
			ended = true
		}
	}()
	var err error
	if k.readOn == nil {
		k.readOn = func() { r.serveKubelet(k) }
	}
	ended, err = r.read(k, r.client, false)
	if !ended {
		return // a fresh goroutine reads on
	}
	var we *writeError
	if r.o.Redial != nil && !(errors.As(err, &we) && we.to == r.client) {
		r.lose(k, err)
		return
	}
	if !r.end(result{k, err}) {
		return // the session is ending already
	}
	if errors.Is(err, errGoAway) {
		// Passed on as the client would have received it directly.
		r.mu.Lock()
		lastGood := r.lastCID
		r.mu.Unlock()
		r.goAway(r.client, lastGood)
	}
	_ = r.client.c.Close() // wakes the client reader, which tears down
}

// closeBoth closes the client connection and the current kubelet one.
func (r *relay) closeBoth() {
	r.mu.Lock()
	kubelet := r.kubelet
	r.mu.Unlock()
	_ = r.client.c.Close()
	_ = kubelet.c.Close()
}

// goAway writes a GOAWAY to s, bounded in time: the peer may not be reading.
func (r *relay) goAway(s *side, lastGood uint32) {
	if s.c.SetWriteDeadline != nil {
		_ = s.c.SetWriteDeadline(time.Now().Add(goAwayGrace))
	}
	_ = s.write(appendGoAway(nil, lastGood))
}

var errGoAway = errors.New("peer sent GOAWAY")

// protocolError is a frame the peer's spdystream would also have failed on.
type protocolError struct{ err error }

func (e *protocolError) Error() string { return "SPDY protocol error: " + e.err.Error() }
func (e *protocolError) Unwrap() error { return e.err }

func protoErr(err error) error { return &protocolError{err} }

func isClosed(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errClosed)
}
