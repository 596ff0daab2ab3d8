package e2e

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/hashpod"
)

// Ports of pod "slow": a firehose that writes forever and reads nothing,
// and a black hole that accepts and then neither reads nor writes.
const (
	firehosePort  = 7100
	blackholePort = 7101
	slowChunk     = 32 << 10
)

// Bounds on what a stalled stream may add to this process's heap (after
// GC). The gateway itself adds nothing per byte (docs/stream-relay.md §14);
// what these allow is its peers' spdystream buffers, which live in the same
// process: up to 50 queued frames of 32 KiB per frame worker, which
// spdystream's frameQueue.Pop (priority.go) even keeps reachable after they
// were consumed, since it does not clear the popped slot — in the test
// client when the client stalls, in the test kubelet when the pod does.
const (
	clientStallBound = 4 << 20
	podStallBound    = 4 << 20
	// heapGrowthBound is how much the heap may move between two samples
	// taken seconds apart while the stall lasts.
	heapGrowthBound = 512 << 10
)

// TestSlowPeerMemory stalls one forwarded connection, a client that stops
// reading while the pod keeps sending, or a pod that stops reading while
// the client keeps sending, in both splices: the stalled sender must stop
// (backpressure reaches it, nothing queues), the heap stays within a bound
// and does not grow, and other sessions keep moving byte-exact data.
func TestSlowPeerMemory(t *testing.T) {
	for _, mode := range []string{options.SpliceStreams, options.SpliceOpaque} {
		t.Run(mode+"/client-stops-reading", func(t *testing.T) {
			e, fire, _ := slowEnv(t, mode)
			c := dialGated(t, e, "slow")
			c.warmUp(t)
			base := settledHeap()
			data := c.open(t, firehosePort)
			go func() { _, _ = io.Copy(io.Discard, data) }() // reads until the gate closes
			eventually(t, 20*time.Second, "the firehose to send", func() bool { return fire.sent.Load() > 1<<20 })
			c.stall()
			checkStalled(t, e, "bytes the firehose sent", fire.sent.Load, base, clientStallBound)
		})
		t.Run(mode+"/pod-stops-reading", func(t *testing.T) {
			e, _, _ := slowEnv(t, mode)
			c := dialGated(t, e, "slow")
			c.warmUp(t)
			base := settledHeap()
			data := c.open(t, blackholePort)
			var written atomic.Int64
			go func() {
				chunk := make([]byte, slowChunk)
				for {
					n, err := data.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
			checkStalled(t, e, "bytes the client wrote", written.Load, base, podStallBound)
		})
	}
}

// checkStalled waits until sent stops growing (the stalled peer's
// backpressure reached the sender), checks the heap against base twice,
// seconds apart, then runs two other sessions (SPDY and the WebSocket
// tunnel) that must each move 4 MiB both ways byte-exact meanwhile, and
// checks that the sender is still stopped at the end. The other sessions
// come after the heap samples: each leaves spdystream connections whose
// header compressors (≈ 900 KiB apiece) are freed at unpredictable moments.
func checkStalled(t *testing.T, e *env, what string, sent func() int64, base uint64, bound int64) {
	t.Helper()
	stalledAt := waitStalled(t, what, sent)
	h1 := settledHeap()
	time.Sleep(2 * time.Second)
	h2 := heapAlloc()
	otherSessions(t, e)
	t.Logf("%s stopped at %d; heap %d B at the start, +%d B stalled, %+d B seconds later", what, stalledAt, base, int64(h1)-int64(base), int64(h2)-int64(h1))
	if d := int64(h1) - int64(base); d > bound {
		t.Errorf("the stalled stream added %d B to the heap, want at most %d", d, bound)
	}
	if d := int64(h2) - int64(h1); d > heapGrowthBound {
		t.Errorf("the heap grew by %d B while the stream stayed stalled, want at most %d", d, heapGrowthBound)
	}
	if n := sent(); n-stalledAt > 256<<10 {
		t.Errorf("%s went on from %d to %d while the peer did not read: something queues them", what, stalledAt, n)
	}
}

// otherSessions moves 4 MiB each way, byte-exact, through a new SPDY
// session and a new WebSocket-tunnel session to the hash pod.
func otherSessions(t *testing.T, e *env) {
	t.Helper()
	for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
		f := startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "hash")), hashPort)
		conn, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := transfer(t, conn, 4<<20, 4<<20); err != nil {
			t.Fatalf("%s session beside the stalled one: %v", kind, err)
		}
		_ = conn.Close()
		f.stop()
		select { // its spdystream connection (with a ≈ 900 KiB compressor) is gone
		case <-f.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: ForwardPorts still running 30s after stop", kind)
		}
	}
}

// waitStalled polls sent until it has not changed for 2 s and returns it.
func waitStalled(t *testing.T, what string, sent func() int64) int64 {
	t.Helper()
	last, since := sent(), time.Now()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if n := sent(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= 2*time.Second {
			return n
		}
	}
	t.Fatalf("%s still growing after 60s (%d): the stall never reached the sender", what, last)
	return 0
}

// settledHeap is heapAlloc once two readings 250 ms apart agree within
// 64 KiB (at most 15 s): sessions that just ended free their connections'
// state (spdystream's header compressors are ≈ 900 KiB each) a moment later.
func settledHeap() uint64 {
	h := heapAlloc()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		n := heapAlloc()
		if d := int64(n) - int64(h); d < 64<<10 && d > -64<<10 {
			return n
		}
		h = n
	}
	return h
}

// heapAlloc is the live heap after two collections (the second frees what
// sync.Pool victim caches kept through the first).
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// slowEnv is a gateway in mode with pod "slow" (firehose, black hole, and
// the hash server on hashPort for warm-ups).
func slowEnv(t *testing.T, mode string) (*env, *slowServer, *slowServer) {
	e := newEnv(t, func(o *options.Options) { o.Streams.SpliceMode = mode })
	fire, hole := startSlowServer(t, true), startSlowServer(t, false)
	e.addPod(devcluster.Pod{Name: "slow", Ports: map[int32]string{
		firehosePort: fire.ln.Addr().String(), blackholePort: hole.ln.Addr().String(), hashPort: e.hash.Addr(),
	}})
	return e, fire, hole
}

// TestSlowStreamSameSession shows what a stalled stream does to the other
// streams of its own session: client-go's spdystream hands a stream's DATA
// to its reader through an unbuffered channel from one of five frame
// workers, each with a 50-frame queue, and its connection reader blocks
// when that queue is full. So a local reader that stops reading one
// forwarded connection stops the whole connection on the client's side:
// not even the SYN_REPLY of a new stream gets through. The gateway adds no
// queue of its own (it stops reading the kubelet when its write to the
// client blocks) and no coupling beyond that: once the client resets the
// stalled stream, the next stream of the session moves byte-exact data.
func TestSlowStreamSameSession(t *testing.T) {
	for _, mode := range []string{options.SpliceStreams, options.SpliceOpaque} {
		t.Run(mode, func(t *testing.T) {
			e, fire, _ := slowEnv(t, mode)
			conn, _, err := dialer(t, dialSPDY, e.cfg, e.pfURL("", "slow")).Dial("portforward.k8s.io")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			newPair := func(id, port int) (errS, data httpstream.Stream, err error) {
				h := http.Header{}
				h.Set(corev1.PortHeader, strconv.Itoa(port))
				h.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(id))
				h.Set(corev1.StreamType, corev1.StreamTypeError)
				if errS, err = conn.CreateStream(h); err != nil {
					return nil, nil, err
				}
				_ = errS.Close()
				h.Set(corev1.StreamType, corev1.StreamTypeData)
				data, err = conn.CreateStream(h)
				return errS, data, err
			}
			// The stalled stream: nobody reads what the firehose sends.
			_, stalled, err := newPair(0, firehosePort)
			if err != nil {
				t.Fatal(err)
			}
			waitStalled(t, "bytes the firehose sent", fire.sent.Load)
			done := make(chan error, 1)
			go func() {
				_, data, err := newPair(1, hashPort)
				if err == nil {
					_, err = hashpod.Exchange(httpStreamConn{data}, 1<<20, 1<<20, 7)
				}
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("a second stream finished (err %v) while the first stalled its session; spdystream should have blocked it", err)
			case <-time.After(2 * time.Second):
			}
			_ = stalled.Reset()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("the second stream after the stalled one was reset: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the second stream did not finish within 60s of the stalled stream's reset")
			}
		})
	}
}

// httpStreamConn is a client-go stream as the net.Conn hashpod.Exchange takes.
type httpStreamConn struct{ httpstream.Stream }

func (c httpStreamConn) Close() error                   { return c.Stream.Reset() }
func (httpStreamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (httpStreamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (httpStreamConn) SetDeadline(time.Time) error      { return nil }
func (httpStreamConn) SetReadDeadline(time.Time) error  { return nil }
func (httpStreamConn) SetWriteDeadline(time.Time) error { return nil }
