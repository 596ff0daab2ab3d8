package streams

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

// shortCreation is the kubelet's stream-creation timeout in the cases
// that wait for it to expire.
const shortCreation = 300 * time.Millisecond

// TestRawStreams: streams the kubelet pairs, refuses or gives up on
// (§11 cases 6–9), driven by the raw client.
func TestRawStreams(t *testing.T) {
	notEarly := []path{}
	for _, p := range selectedPaths() {
		if !p.early {
			notEarly = append(notEarly, p)
		}
	}
	earlyOnly := []path{}
	for _, p := range selectedPaths() {
		if p.early {
			earlyOnly = append(earlyOnly, p)
		}
	}
	runMatrix(t, []matrixCase{
		{name: "6a creation timeout, error stream only", opts: clusterOpts{creationTimeout: shortCreation},
			run: rawErrorStreamOnly, want: wantErrorStreamOnly},
		{name: "6b kubelet never replies", paths: notEarly, slow: true, run: neverReplies(createTimeout), want: wantNeverReplies},
		// §8: with early replies the gateway answers SYN_STREAM itself, so
		// a kubelet that never replies no longer makes CreateStream time
		// out after 30 s; the gateway's own creation timer resets both
		// streams instead and the client sees EOF and an empty error text.
		// This is the only early-reply difference in the matrix. The early
		// reply is immediate, so the client waits 5 s, not 30 s, for it.
		{name: "6b kubelet never replies, early reply", paths: earlyOnly, run: neverReplies(5 * time.Second),
			opts: clusterOpts{gateway: func(o *options.Options) { o.Streams.CreationTimeout = time.Second }},
			want: wantNeverRepliesEarly, alts: []string{wantNeverRepliesEarlyDataFirst}},
		// The pair never completes: a shorter creation timeout ends the
		// kubelet's monitor goroutine soon after the case (leak check); it
		// still expires well after the client has closed.
		// Not with early replies, a second §8 difference: the client sends
		// the duplicate without waiting for the kubelet's reply to the
		// first, spdystream hands the two to different workers (id % 5),
		// and the kubelet may pair the duplicate first, so its complaint
		// can land on the second stream (seen 3 times in ~120 runs).
		{name: "7 duplicate requestID", paths: notEarly, opts: clusterOpts{creationTimeout: 2 * time.Second},
			run: rawDuplicateRequestID, want: wantDuplicateRequestID, alts: []string{wantDuplicateRequestIDEarlyText}},
		{name: "8 invalid headers", run: rawInvalidHeaders, want: wantInvalidHeaders},
		// The mispaired streams' timeout must not fire before the client
		// has opened them all (three round trips): 1 s leaves room under load.
		{name: "9 missing requestID", opts: clusterOpts{creationTimeout: time.Second},
			run: rawMissingRequestID, want: wantMissingRequestID},
	})
}

func rawErrorStreamOnly(t *testing.T, e *env) result {
	startPod(t, e)
	c := dialRaw(t, e, "p")
	errS := c.mustCreate("error 0", hdr("error", port(portEcho), "0"))
	_ = errS.Close()
	// The kubelet writes the text and leaves the stream open: no FIN, no RST.
	c.readUntil(errS, "error stream 0", "timed out waiting for streams")
	return c.result()
}

const wantErrorStreamOnly = `
log:
  create error 0: ok
  error stream 0: "(conn=PTR, request=0) timed out waiting for streams"
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
< REPLY s1 {}
< DATA s1 "(conn=PTR, request=0) timed out waiting for streams"
`

// silentKubelet makes the kubelet answer the upgrade and then never reply
// to a SYN_STREAM: a hung kubelet. It reads and drops every byte rather
// than run a spdystream server that never replies: such a server blocks a
// frame worker for good on the first RST_STREAM for an unreplied stream
// (handleResetFrame sends on the stream's unbuffered startChan, which only
// the creator side ever reads), and the relay's creation timer sends one.
func silentKubelet(t *testing.T, e *env) {
	var mu sync.Mutex
	var conns []net.Conn
	e.cluster.Kubelet.SetHandlerHook(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "SPDY/3.1")
		w.Header().Set("X-Stream-Protocol-Version", "portforward.k8s.io")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return true
		}
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		go func() { _, _ = io.Copy(io.Discard, conn) }()
		return true
	})
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
}

// neverReplies is client-go's handleConnection against a silent kubelet,
// waiting at most timeout for each reply.
func neverReplies(timeout time.Duration) func(t *testing.T, e *env) result {
	return func(t *testing.T, e *env) result {
		startPod(t, e)
		silentKubelet(t, e)
		c := dialRaw(t, e, "p")
		c.createTimeout = timeout
		f, err := c.open(port(portEcho), "0") // directly: "Timeout occurred"
		if err == nil {
			c.logf("data stream: read %s then EOF", describe(c.readAll(f.dataS, "data stream")))
			f.errorText()
		}
		time.Sleep(500 * time.Millisecond) // a late reply or reset would show
		return c.result()
	}
}

const wantNeverReplies = `
log:
  create error 0: Timeout occurred
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
`

const wantNeverRepliesEarly = `
log:
  create error 0: ok
  create data 0: ok
  data stream: read 0B=empty then EOF
  error stream 0: ""
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8001 requestid=0 streamtype=data}
< REPLY s1 {}
< REPLY s2 {}
< RST s1 CANCEL
< RST s2 CANCEL
`

// wantNeverRepliesEarlyDataFirst: §8 does not order the two resets.
const wantNeverRepliesEarlyDataFirst = `
log:
  create error 0: ok
  create data 0: ok
  data stream: read 0B=empty then EOF
  error stream 0: ""
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8001 requestid=0 streamtype=data}
< REPLY s1 {}
< REPLY s2 {}
< RST s2 CANCEL
< RST s1 CANCEL
`

func rawDuplicateRequestID(t *testing.T, e *env) result {
	startPod(t, e)
	c := dialRaw(t, e, "p")
	first := c.mustCreate("error 0", hdr("error", port(portEcho), "0"))
	_ = first.Close()
	second := c.mustCreate("error 0 again", hdr("error", port(portEcho), "0"))
	_ = second.Close()
	// The kubelet replies to the duplicate, never resets it, and complains
	// on the pair's first error stream.
	c.readUntil(first, "error stream 0", "error stream already assigned")
	return c.result()
}

const wantDuplicateRequestID = `
log:
  create error 0: ok
  create error 0 again: ok
  error stream 0: "error processing stream for request 0: error stream already assigned"
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8001 requestid=0 streamtype=error}
> FIN s2
< REPLY s1 {}
< REPLY s2 {}
< DATA s1 "error processing stream for request 0: error stream already assigned"
`

// wantDuplicateRequestIDEarlyText: the kubelet hands a stream to its pairing
// loop before it replies (httpStreamReceived, then SendReply), so the
// complaint on s1 may overtake the reply to s2.
const wantDuplicateRequestIDEarlyText = `
log:
  create error 0: ok
  create error 0 again: ok
  error stream 0: "error processing stream for request 0: error stream already assigned"
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8001 requestid=0 streamtype=error}
> FIN s2
< REPLY s1 {}
< DATA s1 "error processing stream for request 0: error stream already assigned"
< REPLY s2 {}
`

func rawInvalidHeaders(t *testing.T, e *env) result {
	p := startPod(t, e)
	c := dialRaw(t, e, "p")
	for _, bad := range []struct {
		label string
		h     http.Header
	}{
		{"no port", hdr("error", "-", "0")},
		{"empty port", hdr("error", "", "0")},
		{"port 0", hdr("error", "0", "0")},
		{"port abc", hdr("error", "abc", "0")},
		{"port 70000", hdr("error", "70000", "0")},
		{"data, port -1", hdr("data", "-1", "0")},
		{"no streamType", hdr("-", port(portEcho), "0")},
		{"streamType bogus", hdr("bogus", port(portEcho), "0")},
	} {
		if _, err := c.create(bad.label, bad.h); !isReset(err) {
			t.Errorf("create %s: got %v, want %v", bad.label, err, spdystream.ErrReset)
		}
	}
	// The connection is still usable: a good pair with the same request id.
	f := c.mustOpen(port(portEcho), "0")
	echo(t, c, f, payloadUp)
	c.logf("%v", p.event(t))
	f.errorText()
	return c.result()
}

const wantInvalidHeaders = `
log:
  create no port: Stream reset
  create empty port: Stream reset
  create port 0: Stream reset
  create port abc: Stream reset
  create port 70000: Stream reset
  create data, port -1: Stream reset
  create no streamType: Stream reset
  create streamType bogus: Stream reset
  create error 0: ok
  create data 0: ok
  data stream 0: read 3145851B=up then EOF
  pod 8001 read 3145851B=up then EOF
  error stream 0: ""
frames:
> SYN s1 {requestid=0 streamtype=error}
> SYN s2 {port= requestid=0 streamtype=error}
> SYN s3 {port=0 requestid=0 streamtype=error}
> SYN s4 {port=abc requestid=0 streamtype=error}
> SYN s5 {port=70000 requestid=0 streamtype=error}
> SYN s6 {port=-1 requestid=0 streamtype=data}
> SYN s7 {port=8001 requestid=0}
> SYN s8 {port=8001 requestid=0 streamtype=bogus}
> SYN s9 {port=8001 requestid=0 streamtype=error}
> FIN s9
> SYN s10 {port=8001 requestid=0 streamtype=data}
> DATA s10 3145851B=up
> FIN s10
< RST s1 CANCEL
< RST s2 CANCEL
< RST s3 CANCEL
< RST s4 CANCEL
< RST s5 CANCEL
< RST s6 CANCEL
< RST s7 CANCEL
< RST s8 CANCEL
< REPLY s9 {}
< REPLY s10 {}
< DATA s10 3145851B=up
< FIN s9
< FIN s10
`

func rawMissingRequestID(t *testing.T, e *env) result {
	p := startPod(t, e)
	c := dialRaw(t, e, "p")
	// Without requestID the kubelet pairs by its own stream ids (error: id,
	// data: id-2). A refused stream first makes the ids skip one.
	if _, err := c.create("refused", hdr("error", "abc", "-")); !isReset(err) {
		t.Errorf("create refused: got %v, want %v", err, spdystream.ErrReset)
	}
	f := c.mustOpen(port(portEcho), "-") // ids 3 and 5: one pair
	echo(t, c, f, payloadUp)
	c.logf("%v", p.event(t))
	f.errorText()
	// Ids 7 and 11 (9 refused in between): the kubelet pairs them as
	// requests 7 and 9, and both pairs time out.
	errS := c.mustCreate("error -", hdr("error", port(portEcho), "-"))
	_ = errS.Close()
	if _, err := c.create("refused", hdr("data", "abc", "-")); !isReset(err) {
		t.Errorf("create refused: got %v, want %v", err, spdystream.ErrReset)
	}
	c.mustCreate("data -", hdr("data", port(portEcho), "-"))
	c.readUntil(errS, "error stream -", "timed out waiting for streams")
	c.logf("pod %d: %d connections", portEcho, p.accepted(portEcho)) // the first pair's only
	return c.result()
}

const wantMissingRequestID = `
log:
  create refused: Stream reset
  create error -: ok
  create data -: ok
  data stream -: read 3145851B=up then EOF
  pod 8001 read 3145851B=up then EOF
  error stream -: ""
  create error -: ok
  create refused: Stream reset
  create data -: ok
  error stream -: "(conn=PTR, request=7) timed out waiting for streams"
  pod 8001: 1 connections
frames:
> SYN s1 {port=abc streamtype=error}
> SYN s2 {port=8001 streamtype=error}
> FIN s2
> SYN s3 {port=8001 streamtype=data}
> DATA s3 3145851B=up
> FIN s3
> SYN s4 {port=8001 streamtype=error}
> FIN s4
> SYN s5 {port=abc streamtype=data}
> SYN s6 {port=8001 streamtype=data}
< RST s1 CANCEL
< REPLY s2 {}
< REPLY s3 {}
< DATA s3 3145851B=up
< FIN s2
< FIN s3
< REPLY s4 {}
< RST s5 CANCEL
< REPLY s6 {}
< DATA s4 "(conn=PTR, request=7) timed out waiting for streams"
`
