package relay

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"
)

// FuzzRelay's first input byte picks Options and how the session ends.
const (
	optEarlyReply   = 1 << iota
	optMaxStreams   // MaxStreams 2
	optShortTimeout // CreationTimeout 1ms, so timers fire during the run
	optDecide       // port 22 refused silently, port 23 with a message
	optLinger       // 2ms between the client's last byte and the end
	optKubeletEnds  // the kubelet ends the session (EOF), not the client
	optGoAway       // with optKubeletEnds: by GOAWAY
	optFreeRun      // no lockstep: the client's bytes race the kubelet's answers
)

// runBound is how long Run may take once the ending side has ended.
const runBound = 2 * time.Second

// FuzzRelay runs the whole relay. Input: an options byte, a seed for the
// kubelet's answers, a seed for the segment sizes the client's bytes are
// read in (0: all at once), then the client's bytes.
//
// The kubelet side is fakeKubelet, not a spdystream server: it reads every
// byte the relay sends it with spdystream's own Framer (so "the kubelet's
// bytes parse" is checked frame by frame), checks what a server cannot
// report (the gateway's ids in order, DATA only on opened streams, no
// frame type the gateway never sends), answers from the input in ways a
// well-behaved echo server never would (refusals, silence, error text,
// its own streams and pings, GOAWAY, garbage), and starts no goroutines or
// timers of its own, which a spdystream.Connection does: every goroutine
// left afterwards is then the relay's or this harness's.
func FuzzRelay(f *testing.F) {
	for _, s := range relaySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{b: data}
		opts, kseed, seg := in.byte(), in.byte(), in.byte()
		runScript(t, opts, kseed, seg, in.b)
	})
}

func runScript(t *testing.T, opts, kseed, seg byte, script []byte) {
	before := goroutineIDs()
	var moves atomic.Uint64
	cIn, cOut, kIn, kOut := newMemPipe(&moves), newMemPipe(&moves), newMemPipe(&moves), newMemPipe(&moves)
	// A run should depend on its input only, or the fuzzer reads schedule
	// noise as new coverage (this harness's wait loops are instrumented
	// too) and spends its time failing to minimise it. So: one P, and in
	// lockstep each segment is handled by the relay and the kubelet before
	// the next is sent. Data races are the -race unit tests' to find.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	step := func() {
		if opts&optFreeRun == 0 {
			quiesce(&moves, cIn, kOut, kIn)
		} else {
			runtime.Gosched()
		}
	}
	var mu sync.Mutex
	var recs []Record
	o := Options{Record: func(r Record) { mu.Lock(); recs = append(recs, r); mu.Unlock() }}
	if opts&optEarlyReply != 0 {
		o.EarlyReply = true
	}
	if opts&optMaxStreams != 0 {
		o.MaxStreams = 2
	}
	if opts&optShortTimeout != 0 {
		o.CreationTimeout = time.Millisecond
	}
	if opts&optDecide != 0 {
		o.Decide = func(p PairInfo) Decision {
			switch p.Port {
			case 22:
				return Decision{Deny: true}
			case 23:
				return Decision{Deny: true, Message: "port 23 is not allowed"}
			}
			return Decision{}
		}
	}
	r := newRelay(
		Conn{R: cIn, W: cOut, Close: func() error { cIn.closeRead(); cOut.closeWrite(); return nil }},
		Conn{R: kIn, W: kOut, Close: func() error { kIn.closeRead(); kOut.closeWrite(); return nil }},
		o)
	r.answerGrace = time.Millisecond // the fake kubelet is often silent
	k := newFakeKubelet(kOut, kIn, kseed)
	kDone := make(chan struct{})
	go func() { defer close(kDone); k.run() }()
	ended := make(chan End, 1)
	r.start(func(e End) { ended <- e })

	rng := uint32(seg)<<16 | 0x2f1
	for rest := script; len(rest) > 0; {
		n := len(rest)
		if seg != 0 {
			rng ^= rng << 13
			rng ^= rng >> 17
			rng ^= rng << 5
			n = min(n, 1+int(rng%uint32(seg)))
		}
		if _, err := cIn.Write(rest[:n]); err != nil {
			break // the session already ended
		}
		rest = rest[n:]
		step()
	}
	if opts&optLinger != 0 {
		time.Sleep(2 * time.Millisecond)
		step()
	}
	switch {
	case opts&optKubeletEnds == 0:
		cIn.closeWrite()
	case opts&optGoAway != 0:
		_, _ = kIn.Write(appendGoAway(nil, 0))
	default:
		kIn.closeWrite()
	}
	var end End
	select {
	case end = <-ended:
	case <-time.After(runBound):
		t.Fatalf("Run still running %v after the input ended\n%s", runBound, allStacks())
	}
	select {
	case <-kDone:
	case <-time.After(runBound):
		t.Fatalf("the kubelet side was not closed\n%s", allStacks())
	}

	if end.By != "client" && end.By != "kubelet" {
		t.Fatalf("End.By = %q", end.By)
	}
	if k.violation != nil {
		t.Fatalf("kubelet side: %v", k.violation)
	}
	if err := checkClientWire(cOut.pending()); err != nil {
		t.Fatalf("client side: %v", err)
	}
	if err := checkState(r); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, rec := range recs {
		if !slices.Contains(Outcomes, rec.Outcome) || rec.End.Before(rec.Start) || len(rec.Message) > MaxMessage || rec.Up < 0 || rec.Down < 0 {
			t.Fatalf("invalid record %+v", rec)
		}
	}
	if leaked := waitGoroutines(before); leaked != "" {
		t.Fatalf("goroutines left behind:\n%s", leaked)
	}
}

// checkClientWire checks what the relay wrote the client: valid SPDY,
// only frames a gateway sends a client, at most one SYN_REPLY per stream.
func checkClientWire(b []byte) error {
	wr := newWireReader(bytes.NewReader(b))
	replied := map[spdy.StreamId]bool{}
	for {
		f, err := wr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *spdy.SynReplyFrame:
			if replied[f.StreamId] {
				return fmt.Errorf("a second SYN_REPLY for stream %d", f.StreamId)
			}
			replied[f.StreamId] = true
		case *spdy.PingFrame:
			if f.Id%2 == 0 {
				return fmt.Errorf("PING %d: the gateway sends the client no pings of its own", f.Id)
			}
		case *spdy.DataFrame, *spdy.RstStreamFrame, *spdy.GoAwayFrame:
		default:
			return fmt.Errorf("the gateway sent the client a %T", f)
		}
	}
}

// checkState checks the relay once Run returned: every pair ended and was
// emitted, no timer left armed, the two stream maps agree.
//
// byClient and the kubelet's streams may still hold the streams that were open at the
// end: finishAll ends their pairs but does not clear the maps (the relay
// is garbage once Run returns, so that holds nothing).
func checkState(r *relay) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closing || len(r.pairs) != 0 || len(r.live) != 0 || len(r.ended) != 0 {
		return fmt.Errorf("after Run: closing %v, %d pairs by requestID, %d live, %d records not emitted", r.closing, len(r.pairs), len(r.live), len(r.ended))
	}
	for cid, st := range r.byClient {
		if st.cid != cid || (st.kid != 0 && st.k.streams[st.kid] != st) {
			return fmt.Errorf("byClient[%d] = %+v, kubelet streams[%d] = %p", cid, st, st.kid, st.k.streams[st.kid])
		}
		if st.timer != nil && st.timer.Stop() {
			return fmt.Errorf("stream %d/%d has a timer still armed", st.cid, st.kid)
		}
		if st.p != nil && st.p.timer != nil && st.p.timer.Stop() {
			return fmt.Errorf("the pair of stream %d has a timer still armed", st.cid)
		}
	}
	for kid, st := range r.kubelet.streams {
		if st.kid != kid || r.byClient[st.cid] != st {
			return fmt.Errorf("kubelet streams[%d] = %+v is not byClient[%d]", kid, st, st.cid)
		}
	}
	return nil
}

func allStacks() string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// goroutineIDs returns the ids of the goroutines running now.
func goroutineIDs() map[int]bool {
	ids := map[int]bool{}
	for _, g := range strings.Split(allStacks(), "\n\n") {
		var id int
		if _, err := fmt.Sscanf(g, "goroutine %d ", &id); err == nil {
			ids[id] = true
		}
	}
	return ids
}

// waitGoroutines waits for the goroutines started since before (ids are
// never reused) that run relay or harness code to end, and returns their
// stacks if some do not. Only those count: the fuzzing engine starts
// goroutines of its own.
func waitGoroutines(before map[int]bool) string {
	deadline := time.Now().Add(runBound)
	for spins := 0; ; spins++ {
		var left []string
		for _, g := range strings.Split(allStacks(), "\n\n") {
			var id int
			if _, err := fmt.Sscanf(g, "goroutine %d ", &id); err == nil && !before[id] && strings.Contains(g, "pfgateway/relay.") {
				left = append(left, g)
			}
		}
		switch {
		case len(left) == 0:
			return ""
		case time.Now().After(deadline):
			return strings.Join(left, "\n\n")
		case spins < 100:
			runtime.Gosched()
		default:
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// relaySeeds are client sessions as client-go writes them (its headers,
// DATA, pings, GOAWAY), then variants and protocol edges. client-go writes
// DATA frames of up to 32 KiB; the seeds' carry at most 200 bytes, because
// the fuzzer minimises every input that finds new coverage, in time
// quadratic in its size (capped at a minute per input by default): a
// 2 KiB input already took every minute of a run.
func relaySeeds() [][]byte {
	var enc storedEncoder
	syn := func(id uint32, kind, port string, req int) []byte {
		return enc.appendSynStream(nil, id, 0, 0, 0, 0, pairHeaders(kind, port, req))
	}
	seed := func(opts, kseed, seg byte, frames ...[]byte) []byte {
		enc = storedEncoder{} // the next seed is a new connection
		return append([]byte{opts, kseed, seg}, bytes.Join(frames, nil)...)
	}
	// client-go's own bytes: spdystream's Framer at BestCompression.
	var cg bytes.Buffer
	w, _ := spdy.NewFramer(&cg, nil)
	_ = w.WriteFrame(&spdy.SynStreamFrame{StreamId: 1, Headers: pairHeaders(kindError, "8080", 0)})
	_ = w.WriteFrame(&spdy.DataFrame{StreamId: 1, Flags: spdy.DataFlagFin})
	_ = w.WriteFrame(&spdy.SynStreamFrame{StreamId: 3, Headers: pairHeaders(kindData, "8080", 0)})
	_ = w.WriteFrame(&spdy.DataFrame{StreamId: 3, Data: bytes.Repeat([]byte("x"), 64)})
	_ = w.WriteFrame(&spdy.PingFrame{Id: 1})
	_ = w.WriteFrame(&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin})
	_ = w.WriteFrame(&spdy.GoAwayFrame{})
	get := []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	return [][]byte{
		append([]byte{0, 1, 0}, cg.Bytes()...),
		seed(0, 2, 0, syn(1, kindError, "8080", 0), appendData(nil, 1, flagFin, nil), syn(3, kindData, "8080", 0),
			appendData(nil, 3, 0, get), appendPing(nil, 1), appendData(nil, 3, flagFin, nil)),
		seed(optEarlyReply|optLinger|optFreeRun, 3, 7, syn(1, kindError, "8080", 0), syn(3, kindData, "8080", 0), appendData(nil, 3, 0, get),
			syn(5, kindError, "8080", 1), syn(7, kindData, "8080", 1), appendData(nil, 7, flagFin, get), appendGoAway(nil, 0)),
		seed(optDecide|optMaxStreams|optLinger, 4, 16, syn(1, kindError, "22", 0), syn(3, kindData, "22", 0),
			syn(5, kindError, "23", 1), syn(7, kindError, "8080", 2), syn(9, kindData, "8080", 2), syn(11, kindData, "23", 1),
			syn(13, kindError, "8080", 3)),
		seed(optShortTimeout|optLinger|optEarlyReply, 5, 0, syn(1, kindError, "8080", 0), syn(3, kindData, "8080", 7)),
		seed(0, 6, 3, syn(1, kindError, "8080", -1), syn(3, kindData, "8080", -1), syn(5, kindData, "0", 9),
			syn(7, "bogus", "8080", 9), syn(9, kindError, "8080", 0), syn(11, kindError, "8080", 0), syn(9, kindData, "8080", 0),
			appendHeadersFrame(nil, &enc, 3, flagFin, http.Header{"X": {"y"}}),
			append(appendControlHeader(nil, typeSettings, 0, 12), 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 1, 0),
			append(appendControlHeader(nil, typeWindowUpdate, 0, 8), 0, 0, 0, 3, 0, 0, 1, 0),
			enc.appendSynReply(nil, 1, 0, http.Header{}), appendRst(nil, 3, rstCancel), appendData(nil, 99, 0, get), appendPing(nil, 2)),
		seed(optKubeletEnds|optLinger, 7, 0, syn(1, kindError, "8080", 0), syn(3, kindData, "8080", 0), appendData(nil, 3, 0, get)),
		seed(optKubeletEnds|optGoAway|optLinger, 8, 0, syn(1, kindError, "8080", 0), syn(3, kindData, "8080", 0)),
		seed(0, 9, 0, syn(1, kindData, "8080", 0), appendControlHeader(nil, 10, 0, 0)),
		seed(0, 10, 0, syn(1, kindData, "8080", 0), appendControlHeader(nil, typeSynStream, 0, maxControlPayload+1)),
		// A DATA frame larger than the read buffer, cut short: the payload is
		// streamed (largeData) until the client's end. Whole ones are tested
		// by TestLargeDataFramesPassWhole; as seeds they make every
		// minimisation slow.
		seed(optLinger, 11, 0, syn(1, kindError, "8080", 0), syn(3, kindData, "8080", 0), appendData(nil, 3, 0, make([]byte, 100<<10))[:200]),
		// Each of the relay's timers fires: the kubelet never replies after
		// an early reply; half a pair ends quietly; a refused pair's second
		// stream never comes.
		seed(optEarlyReply|optShortTimeout|optLinger, kubeletSeed(5, 5), 0, syn(1, kindError, "8080", 0), syn(3, kindData, "8080", 0)),
		seed(optShortTimeout|optLinger, kubeletSeed(7, -1), 0, syn(1, kindError, "8080", 0), appendData(nil, 1, flagFin, nil)),
		seed(optDecide|optShortTimeout|optLinger, 0, 0, syn(1, kindError, "23", 0)),
		// Half-closes carried by frames that are not relayed: the client's
		// HEADERS+FIN, the kubelet's SYN_REPLY+FIN after an early reply.
		seed(optEarlyReply, kubeletSeed(3, 0), 0, syn(1, kindError, "8080", 0), syn(3, kindData, "8080", 0),
			appendHeadersFrame(nil, &enc, 3, flagFin, http.Header{})),
	}
}

// kubeletSeed finds a fakeKubelet seed whose answers to the frames the
// relay sends it are answers (-1 for a frame that is not a SYN_STREAM),
// with nothing sent unprompted in between.
func kubeletSeed(answers ...int) byte {
	for seed := range 256 {
		k := newFakeKubelet(nil, nil, byte(seed))
		ok := k.rand()%64 > 6 // act before the first frame
		for _, a := range answers {
			if a >= 0 {
				ok = ok && int(k.rand()%8) == a
			}
			ok = ok && k.rand()%64 > 6
		}
		if ok {
			return byte(seed)
		}
	}
	panic(fmt.Sprintf("no kubelet seed answers %v", answers))
}
