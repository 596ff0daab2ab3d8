package relay

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moby/spdystream/spdy"
)

// Port-forward stream headers (k8s.io/api/core/v1: PortHeader, StreamType,
// PortForwardRequestIDHeader), canonicalised as http.Header keys them.
const (
	hdrPort      = "Port"
	hdrStreamTyp = "Streamtype"
	hdrRequestID = "Requestid"
	kindError    = "error"
	kindData     = "data"
)

// relay is one client connection relayed to one kubelet connection.
type relay struct {
	o               Options
	client, kubelet *side

	mu sync.Mutex
	// The two id spaces: the client's ids are its own, the kubelet-side ids
	// are the gateway's. They coincide only while nothing was refused.
	// The kubelet-side ids are per kubelet connection (side.streams).
	byClient   map[uint32]*stream
	pairs      map[string]*pair // pairing by requestID, while a pair is open
	live       map[*pair]struct{}
	nextCID    uint32 // the lowest id the client may open next (spdystream's rule)
	lastCID    uint32 // the highest client id accepted, for GOAWAY
	lastMirror time.Time
	lv         liveness
	closing    bool
	stopMsg    string              // set by a Stop (stop.go): new streams are refused with it
	stopHalf   map[string]struct{} // request ids of half pairs a Stop ended (stop.go)
	ended      []Record

	// Kubelet replacement (redial.go). kubelet is the current connection;
	// it changes only under mu.
	ending      bool          // the session is ending: replace nothing (end)
	first       result        // why it ends, once ending
	overCh      chan struct{} // closed once ending
	answers     chan struct{} // a kubelet answered its last stream (answers.go)
	answerGrace time.Duration
	stopWG      sync.WaitGroup // a Stop's goroutine (stop.go)
	panicked    any            // a kubelet reader's panic, for End
	panicStack  []byte
	kwg         sync.WaitGroup  // kubelet readers
	dialWG      sync.WaitGroup  // the redial goroutine
	stopCtx     context.Context // cancelled when the session ends
	stopDial    context.CancelFunc
	dialing     bool
	waiting     []*stream // client streams waiting for a new kubelet connection
	backoff     time.Duration
	losses      int
	reconnects  int
}

// stream is one SPDY stream as both sides know it.
type stream struct {
	cid uint32
	// kid is the kubelet-side id on connection k; 0 when the stream never
	// reached the kubelet, or no longer does (refused by the gateway, or
	// waiting for a new kubelet connection).
	kid uint32
	k   *side
	// A stream waiting for a new kubelet connection keeps its SYN_STREAM.
	syn  *spdy.SynStreamFrame
	h    http.Header
	kind string
	p    *pair // nil for a duplicate stream, which belongs to no pair

	replied  bool // the client has its SYN_REPLY
	early    bool // the gateway replied, the kubelet's reply is swallowed
	kReplied bool // the kubelet replied
	finC     bool // half-closed by the client
	finK     bool // half-closed by the kubelet (or the gateway for it)
	timer    *time.Timer
}

// pair is one forwarded connection: an error and a data stream sharing a
// requestID.
type pair struct {
	rec         Record
	errS, dataS *stream
	open        int     // streams of the pair still mapped
	first       Outcome // the first decisive event
	forced      Outcome // a gateway decision, which wins
	dup         bool
	denied      bool
	denyMsg     string
	msg         []byte
	timer       *time.Timer
	standalone  bool // not pairable: headers the kubelet rejects
}

func (r *relay) now() time.Time { return r.o.Now() }

// newPair starts a pair; standalone pairs are never looked up by requestID.
func (r *relay) newPair(reqID string, port uint16, standalone bool) *pair {
	p := &pair{rec: Record{RequestID: reqID, Port: port, Start: r.now()}, standalone: standalone}
	if r.live == nil {
		r.live = map[*pair]struct{}{}
	}
	r.live[p] = struct{}{}
	if !standalone {
		r.pairs[reqID] = p
	}
	return p
}

func (p *pair) add(st *stream) {
	st.p = p
	p.open++
	if p.timer != nil && !p.denied {
		p.timer.Stop()
		p.timer = nil
	}
	switch st.kind {
	case kindError:
		p.errS = st
	case kindData:
		p.dataS = st
	}
}

func (p *pair) event(o Outcome) {
	if p.first == "" {
		p.first = o
	}
}

// fin marks a half-close of st from one side. It reports whether a pair
// ended (a Record is waiting to be emitted).
func (r *relay) fin(st *stream, fromClient bool) bool {
	if fromClient {
		st.finC = true
	} else {
		st.finK = true
	}
	if p := st.p; p != nil && st == p.dataS {
		if fromClient {
			p.event(OutcomeClientClosed)
		} else {
			p.event(OutcomePodClosed)
		}
	}
	if st.finC && st.finK {
		return r.remove(st)
	}
	return false
}

// remove forgets st on both sides. It reports whether its pair ended.
func (r *relay) remove(st *stream) bool {
	if r.byClient[st.cid] == st {
		delete(r.byClient, st.cid)
	}
	if st.kid != 0 && st.k.streams[st.kid] == st {
		delete(st.k.streams, st.kid)
	}
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	p := st.p
	if p == nil {
		return false
	}
	st.p = nil
	p.open--
	if p.open > 0 {
		return false
	}
	if (p.errS == nil || p.dataS == nil) && !p.standalone && !p.denied && p.first == "" {
		// Half a pair ended quietly; its other half may still come, as the
		// kubelet also waits for it (until its stream creation timeout).
		if p.timer == nil {
			p.timer = time.AfterFunc(r.o.CreationTimeout, func() { r.halfPairTimeout(p) })
		}
		return false
	}
	r.endPair(p, "")
	return true
}

// halfPairTimeout ends a pair whose second stream never came.
func (r *relay) halfPairTimeout(p *pair) {
	r.mu.Lock()
	if _, ok := r.live[p]; ok && p.open == 0 && !r.closing {
		r.endPair(p, OutcomeCreationTimeout)
	}
	r.mu.Unlock()
	r.emit()
}

// endPair records p with fallback as the outcome when nothing decided it.
func (r *relay) endPair(p *pair, fallback Outcome) {
	if _, ok := r.live[p]; !ok {
		return
	}
	delete(r.live, p)
	if !p.standalone && r.pairs[p.rec.RequestID] == p {
		delete(r.pairs, p.rec.RequestID)
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	rec := p.rec
	rec.End = r.now()
	rec.Message = string(p.msg)
	if p.denied && p.denyMsg != "" {
		rec.Message = p.denyMsg
	}
	switch {
	case p.forced != "":
		rec.Outcome = p.forced
	case p.dup:
		rec.Outcome = OutcomeDuplicateRequest
	case len(p.msg) > 0 && isCreationTimeout(p.msg):
		rec.Outcome = OutcomeCreationTimeout
	case len(p.msg) > 0:
		rec.Outcome = OutcomeKubeletError
	case p.first != "":
		rec.Outcome = p.first
	case fallback != "":
		rec.Outcome = fallback
	default:
		rec.Outcome = OutcomeClientGone
	}
	r.ended = append(r.ended, rec)
}

// isCreationTimeout recognises cri-streaming's monitorStreamPair message,
// "(conn=%p, request=%s) timed out waiting for streams".
func isCreationTimeout(msg []byte) bool {
	const suffix = "timed out waiting for streams"
	return len(msg) >= len(suffix) && string(msg[len(msg)-len(suffix):]) == suffix
}

// emit hands ended pairs to Options.Record, outside the relay's lock.
func (r *relay) emit() {
	r.mu.Lock()
	recs := r.ended
	r.ended = nil
	r.mu.Unlock()
	if r.o.Record == nil {
		return
	}
	for _, rec := range recs {
		r.o.Record(rec)
	}
}

// finishAll ends every open pair once both connections are closed.
func (r *relay) finishAll(gone Outcome) {
	r.mu.Lock()
	r.closing = true
	for st := range r.allStreams() {
		if st.timer != nil {
			st.timer.Stop()
		}
	}
	for p := range r.live {
		r.endPair(p, gone)
	}
	r.mu.Unlock()
	r.emit()
}

func (r *relay) allStreams() map[*stream]struct{} {
	all := make(map[*stream]struct{}, len(r.byClient))
	for _, st := range r.byClient {
		all[st] = struct{}{}
	}
	for _, st := range r.kubelet.streams {
		all[st] = struct{}{}
	}
	return all
}

// parsePort applies the kubelet's rule (cri-streaming httpStreamReceived):
// a base-10 uint16 of at least 1.
func parsePort(s string) (uint16, bool) {
	v, err := strconv.ParseUint(s, 10, 16)
	if err != nil || v < 1 {
		return 0, false
	}
	return uint16(v), true
}
