package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/spdystream/spdy"
)

// memPipe is one direction of an in-memory connection. Unlike net.Pipe,
// writes never block, so the fake kubelet and the relay can write to each
// other at once without deadlocking; each Read returns at most one Write's
// bytes, so the reader sees the segmentation the writer chose.
type memPipe struct {
	moves *atomic.Uint64 // counts reads and writes on all of a run's pipes

	mu      sync.Mutex // protects the fields below
	cond    *sync.Cond
	chunks  [][]byte
	eof     bool // the writer is done: reads drain what is left, then EOF
	gone    bool // the reader is done: reads and writes fail
	waiting bool // a reader is parked on an empty pipe
}

func newMemPipe(moves *atomic.Uint64) *memPipe {
	p := &memPipe{moves: moves}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *memPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.eof || p.gone {
		return 0, net.ErrClosed
	}
	p.moves.Add(1)
	p.chunks = append(p.chunks, bytes.Clone(b))
	p.cond.Broadcast()
	return len(b), nil
}

func (p *memPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.chunks) == 0 && !p.eof && !p.gone {
		p.waiting = true
		p.cond.Wait()
		p.waiting = false
	}
	p.moves.Add(1)
	switch {
	case p.gone:
		return 0, net.ErrClosed
	case len(p.chunks) == 0:
		return 0, io.EOF
	}
	n := copy(b, p.chunks[0])
	if p.chunks[0] = p.chunks[0][n:]; len(p.chunks[0]) == 0 {
		p.chunks = p.chunks[1:]
	}
	return n, nil
}

// idle says whether the pipe's reader has consumed everything: it is
// parked on the empty pipe, or it will only ever get an error.
func (p *memPipe) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gone || (len(p.chunks) == 0 && (p.waiting || p.eof))
}

// quiesce waits until every reader of pipes is idle with no read or write
// in between: then every party has handled all it was sent. Only the
// relay's timers can still act. It gives up after runBound (a stuck relay
// is reported by the caller).
func quiesce(moves *atomic.Uint64, pipes ...*memPipe) {
	deadline := time.Now().Add(runBound)
	for spins := 0; time.Now().Before(deadline); spins++ {
		before := moves.Load()
		all := true
		for _, p := range pipes {
			all = all && p.idle()
		}
		if all && moves.Load() == before {
			return
		}
		if spins < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// closeWrite is the writer's close: the reader gets what was written, then EOF.
func (p *memPipe) closeWrite() {
	p.mu.Lock()
	p.eof = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// closeRead is the reader's close: its pending Read fails.
func (p *memPipe) closeRead() {
	p.mu.Lock()
	p.gone = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// pending returns what was written and never read.
func (p *memPipe) pending() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Join(p.chunks, nil)
}

// wireReader reads a byte stream as SPDY frames with spdystream's Framer
// (one zlib context for the whole stream, as a peer has) and keeps the
// bytes, to tell a cut frame the relay may legitimately leave from one it
// must not.
type wireReader struct {
	src io.Reader
	rec bytes.Buffer
	f   *spdy.Framer
}

func newWireReader(src io.Reader) *wireReader {
	w := &wireReader{src: src}
	w.f, _ = spdy.NewFramer(nil, w)
	return w
}

func (w *wireReader) Read(p []byte) (int, error) {
	n, err := w.src.Read(p)
	w.rec.Write(p[:n])
	return n, err
}

// next returns the next frame, or io.EOF at a clean end. The one partial
// frame the relay may write is a DATA frame larger than its buffer whose
// payload it streams (largeData) when the source ends mid-frame.
func (w *wireReader) next() (spdy.Frame, error) {
	start := w.rec.Len()
	f, err := w.f.ReadFrame()
	if err == nil {
		return f, nil
	}
	rest := w.rec.Bytes()[start:]
	cut := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	switch {
	case cut && len(rest) == 0:
		return nil, io.EOF
	case cut && len(rest) >= headerLen && !isControl(rest) && payloadLen(rest) > bufSize-headerLen:
		return nil, io.EOF
	}
	return nil, fmt.Errorf("frame at byte %d (% x): %w", start, rest[:min(len(rest), 24)], err)
}

// fakeKubelet is the relay's kubelet side: a SPDY server on spdystream's
// Framer whose answers to each stream are drawn from the fuzz input
// (reply, reply with FIN, refuse, ignore, the kubelet's creation-timeout
// message, half-close, pings, streams of its own, SETTINGS, HEADERS,
// GOAWAY, a malformed frame). It checks what it reads from the relay, and
// runs in one goroutine.
type fakeKubelet struct {
	in, out *memPipe // from and to the relay
	rng     uint32
	enc     storedEncoder

	opened    uint32            // streams the relay opened: ids 1, 3, … 2*opened-1
	kinds     map[uint32]string // their streamType
	pings     uint32            // the kubelet's own pings: ids 2, 4, … pings
	syns      uint32            // the kubelet's own streams: ids 2, 4, … syns
	goneAway  bool
	violation error // the first thing the relay sent that it must not have
}

func newFakeKubelet(in, out *memPipe, seed byte) *fakeKubelet {
	return &fakeKubelet{in: in, out: out, rng: uint32(seed)*0x9e3779b9 | 1, kinds: map[uint32]string{}}
}

// rand is xorshift32: deterministic for an input, whatever the schedule.
func (k *fakeKubelet) rand() uint32 {
	k.rng ^= k.rng << 13
	k.rng ^= k.rng >> 17
	k.rng ^= k.rng << 5
	return k.rng
}

func (k *fakeKubelet) send(b []byte) { _, _ = k.out.Write(b) }

func (k *fakeKubelet) fail(format string, args ...any) {
	if k.violation == nil {
		k.violation = fmt.Errorf(format, args...)
	}
}

func (k *fakeKubelet) run() {
	wr := newWireReader(k.in)
	k.act()
	for {
		f, err := wr.next()
		if err != nil {
			if err != io.EOF {
				k.fail("the kubelet side does not parse: %v", err)
			}
			return
		}
		k.handle(f)
		if !k.goneAway {
			k.act()
		}
	}
}

func (k *fakeKubelet) handle(f spdy.Frame) {
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		id := uint32(f.StreamId)
		if id != 2*k.opened+1 {
			k.fail("SYN_STREAM %d, want %d: the gateway's ids go 1, 3, 5, …", id, 2*k.opened+1)
		}
		k.opened++
		k.kinds[id] = f.Headers.Get(hdrStreamTyp)
		if !k.goneAway {
			k.answer(id)
		}
	case *spdy.DataFrame:
		id := uint32(f.StreamId)
		if id%2 == 0 || id > 2*k.opened {
			k.fail("DATA on stream %d, which the gateway never opened", id)
		}
		switch {
		case k.goneAway:
		case k.kinds[id] == kindData:
			k.send(appendData(nil, id, byte(f.Flags), f.Data)) // echo
		case f.Flags&spdy.DataFlagFin != 0:
			k.send(appendData(nil, id, flagFin, nil))
		}
	case *spdy.RstStreamFrame:
		if id := uint32(f.StreamId); (id%2 == 1 && id > 2*k.opened) || (id%2 == 0 && id > k.syns) {
			k.fail("RST_STREAM for stream %d, which nobody opened", id)
		}
	case *spdy.PingFrame:
		switch {
		case f.Id%2 == 1 && !k.goneAway:
			k.send(appendPing(nil, f.Id))
		case f.Id%2 == 0 && f.Id > k.pings:
			k.fail("PING %d: an even id the kubelet never sent", f.Id)
		}
	case *spdy.GoAwayFrame:
		k.goneAway = true
	default:
		k.fail("the gateway sent the kubelet a %T", f)
	}
}

// answer is what the kubelet does with stream id the relay opened.
func (k *fakeKubelet) answer(id uint32) {
	switch k.rand() % 8 {
	case 0, 1, 2:
		k.send(k.enc.appendSynReply(nil, id, 0, http.Header{}))
	case 3:
		k.send(k.enc.appendSynReply(nil, id, flagFin, http.Header{}))
	case 4:
		k.send(appendRst(nil, id, rstRefusedStream))
	case 5: // never answers
	case 6:
		k.send(k.enc.appendSynReply(nil, id, 0, http.Header{}))
		if k.kinds[id] == kindError {
			k.send(appendData(nil, id, 0, []byte("(conn=0x1, request=0) timed out waiting for streams")))
			k.send(appendRst(nil, id, rstCancel))
		} else {
			k.send(appendHeadersFrame(nil, &k.enc, id, 0, http.Header{"A": {"b"}}))
		}
	case 7:
		k.send(k.enc.appendSynReply(nil, id, 0, http.Header{}))
		k.send(appendData(nil, id, flagFin, nil))
	}
}

// act sometimes sends something unprompted, as a kubelet's connection may.
func (k *fakeKubelet) act() {
	switch k.rand() % 64 {
	case 0:
		k.pings += 2
		k.send(appendPing(nil, k.pings))
	case 1:
		k.syns += 2
		k.send(k.enc.appendSynStream(nil, k.syns, 0, 0, 0, 0, http.Header{}))
	case 2:
		k.send(append(appendControlHeader(nil, typeSettings, 0, 12), 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 1, 0))
	case 3:
		k.send(append(appendControlHeader(nil, typeWindowUpdate, 0, 8), 0, 0, 0, 1, 0, 0, 1, 0))
	case 4:
		if k.opened > 0 {
			k.send(appendHeadersFrame(nil, &k.enc, 2*k.opened-1, flagFin, http.Header{}))
		}
	case 5:
		k.send(appendGoAway(nil, 0))
		k.goneAway = true
	case 6:
		k.send(appendControlHeader(nil, 10, 0, 0)) // unknown type: a protocol error
		k.goneAway = true
	}
}
