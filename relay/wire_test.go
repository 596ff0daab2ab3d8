package relay

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"
)

// rawHarness puts the test on the wire on both sides of a relay: it writes
// the client's frames by hand and reads what reaches the kubelet.
type rawHarness struct {
	t               *testing.T
	client, kubelet net.Conn
	kFramer         *spdy.Framer // reads what the relay sent the kubelet
	cFramer         *spdy.Framer // reads what the relay sent the client
	enc             storedEncoder
	end             chan End
}

func newRawHarness(t *testing.T, o Options) *rawHarness {
	cc, gwc := tcpPair(t)
	gwk, kc := tcpPair(t)
	h := &rawHarness{t: t, client: cc, kubelet: kc, end: make(chan End, 1)}
	h.kFramer, _ = spdy.NewFramer(kc, kc)
	h.cFramer, _ = spdy.NewFramer(cc, cc)
	go func() {
		h.end <- Run(Conn{R: gwc, W: gwc, Close: gwc.Close}, Conn{R: gwk, W: gwk, Close: gwk.Close}, o)
	}()
	t.Cleanup(func() { _ = cc.Close(); _ = kc.Close(); <-h.end })
	return h
}

func (h *rawHarness) send(b []byte) {
	h.t.Helper()
	if _, err := h.client.Write(b); err != nil {
		h.t.Fatal(err)
	}
}

func readFrame(t *testing.T, c net.Conn, f *spdy.Framer) spdy.Frame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	fr, err := f.ReadFrame()
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return fr
}

func TestPingsAreAnsweredPerSideAndMirroredToTheKubelet(t *testing.T) {
	h := newRawHarness(t, Options{})
	h.send(appendPing(nil, 1))
	// The gateway answers although the kubelet never reads or answers.
	if p, ok := readFrame(t, h.client, h.cFramer).(*spdy.PingFrame); !ok || p.Id != 1 {
		t.Fatalf("client got %#v, want the echo of ping 1", p)
	}
	// The kubelet sees the gateway's own ping (odd: the gateway is its client).
	if p, ok := readFrame(t, h.kubelet, h.kFramer).(*spdy.PingFrame); !ok || p.Id != 1 {
		t.Fatalf("kubelet got %#v, want the gateway's ping 1", p)
	}
	// A second client ping within the pacing interval is answered, not mirrored.
	h.send(appendPing(nil, 3))
	if p, ok := readFrame(t, h.client, h.cFramer).(*spdy.PingFrame); !ok || p.Id != 3 {
		t.Fatalf("client got %#v, want the echo of ping 3", p)
	}
	// A kubelet ping (even id) is echoed to the kubelet, never to the client.
	if _, err := h.kubelet.Write(appendPing(nil, 2)); err != nil {
		t.Fatal(err)
	}
	if p, ok := readFrame(t, h.kubelet, h.kFramer).(*spdy.PingFrame); !ok || p.Id != 2 {
		t.Fatalf("kubelet got %#v, want the echo of its ping 2", p)
	}
}

func TestLargeDataFramesPassWhole(t *testing.T) {
	h := newRawHarness(t, Options{})
	h.send(h.enc.appendSynStream(nil, 1, 0, 0, 0, 0, pairHeaders(kindData, "80", 0)))
	syn, ok := readFrame(t, h.kubelet, h.kFramer).(*spdy.SynStreamFrame)
	if !ok || syn.Headers.Get("port") != "80" {
		t.Fatalf("kubelet got %#v", syn)
	}
	payload := make([]byte, 200<<10) // over three times the relay's read buffer
	_, _ = rand.Read(payload)
	h.send(appendData(nil, 1, flagFin, payload))
	d, ok := readFrame(t, h.kubelet, h.kFramer).(*spdy.DataFrame)
	if !ok || !bytes.Equal(d.Data, payload) || d.Flags&spdy.DataFlagFin == 0 || d.StreamId != syn.StreamId {
		t.Fatalf("kubelet got a %T of %d bytes, want %d bytes with FIN on stream %d", d, len(d.Data), len(payload), syn.StreamId)
	}
}

func TestMalformedInputEndsTheSession(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
	}{
		{"unknown control type", appendControlHeader(nil, 10, 0, 0)},
		{"oversized control frame", appendControlHeader(nil, typeSynStream, 0, maxControlPayload+1)},
		{"ping with id 0", appendPing(nil, 0)},
		{"rst with status 0", appendRst(nil, 1, 0)},
		{"corrupt header block", append(appendControlHeader(nil, typeSynStream, 0, 14), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x78, 0xbb, 1, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newRawHarness(t, Options{})
			h.send(tt.frame)
			select {
			case end := <-h.end:
				h.end <- end
				if !end.Protocol || end.By != "client" {
					t.Fatalf("end = %+v, want a protocol error by the client", end)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the relay kept going after a malformed frame")
			}
			expectEOF(t, h.kubelet, "the kubelet side") // closed, and told nothing
		})
	}
}

func TestHeaderBlocksRoundTripAcrossFrames(t *testing.T) {
	var enc storedEncoder
	var wire []byte
	want := []http.Header{
		pairHeaders(kindError, "8080", 0),
		{"A": {"1", "2"}, "Big": {string(bytes.Repeat([]byte("x"), 3000))}},
		{},
	}
	for i, h := range want {
		wire = enc.appendSynReply(wire, uint32(2*i+1), 0, h)
	}
	dec := newDecoder()
	for i, h := range want {
		n := headerLen + payloadLen(wire)
		f, err := dec.decode(wire[:n])
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got := f.(*spdy.SynReplyFrame)
		if got.StreamId != spdy.StreamId(2*i+1) || len(got.Headers) != len(h) {
			t.Fatalf("frame %d = %+v, want %v", i, got, h)
		}
		for k, v := range h {
			if !equalStrings(got.Headers[http.CanonicalHeaderKey(k)], v) {
				t.Fatalf("frame %d header %s = %q, want %q", i, k, got.Headers[k], v)
			}
		}
		wire = wire[n:]
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkRelayData measures the steady-state cost of relaying 32 KiB DATA
// frames (what spdystream writes) through an open stream: allocations per
// op are per 32 KiB.
func BenchmarkRelayData(b *testing.B) {
	cc, gwc := net.Pipe()
	gwk, kc := net.Pipe()
	done := make(chan End, 1)
	go func() {
		done <- Run(Conn{R: gwc, W: gwc, Close: gwc.Close}, Conn{R: gwk, W: gwk, Close: gwk.Close}, Options{})
	}()
	var enc storedEncoder
	go func() { _, _ = cc.Write(enc.appendSynStream(nil, 1, 0, 0, 0, 0, pairHeaders(kindData, "80", 0))) }()
	frame := appendData(nil, 1, 0, make([]byte, 32<<10))
	buf := make([]byte, len(frame))
	// The SYN_STREAM reaches the kubelet side first.
	hdr := make([]byte, headerLen)
	_, _ = io.ReadFull(kc, hdr)
	_, _ = io.ReadFull(kc, make([]byte, payloadLen(hdr)))
	b.SetBytes(32 << 10)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			_, _ = cc.Write(frame)
		}
	}()
	for i := 0; i < b.N; i++ {
		if _, err := io.ReadFull(kc, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_ = cc.Close()
	_ = kc.Close()
	<-done
}

func TestPlainPing(t *testing.T) {
	ping := appendPing(nil, 7)
	flagged := appendPing(nil, 7)
	flagged[4] = 1
	long := append(appendControlHeader(nil, typePing, 0, 5), 0, 0, 0, 7, 0)
	for _, tc := range []struct {
		name   string
		frame  []byte
		wantID uint32
		wantOK bool
	}{
		{"should read a ping's id", ping, 7, true},
		{"should leave a ping with flags to the decoder", flagged, 0, false},
		{"should leave id 0 to the decoder", appendPing(nil, 0), 0, false},
		{"should leave a 5-byte payload to the decoder", long, 0, false},
		{"should leave other frames to the decoder", appendRst(nil, 7, 1), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if id, ok := plainPing(tc.frame); id != tc.wantID || ok != tc.wantOK {
				t.Fatalf("plainPing = %d, %v; want %d, %v", id, ok, tc.wantID, tc.wantOK)
			}
		})
	}
}

// TestPlainPingCoversDecodedPings: every PING the decoder accepts is one
// plainPing takes, so control's fast path answers them all.
func TestPlainPingCoversDecodedPings(t *testing.T) {
	decoded := 0
	for _, flags := range []byte{0, 1, 2} {
		for _, id := range []uint32{0, 1, 2, 0x7fffffff, 0xffffffff} {
			for _, extra := range [][]byte{nil, {0}, {0, 0, 0, 0}} {
				f := appendPing(nil, id)
				f[4] = flags
				f = append(f, extra...)
				f[7] = byte(len(f) - headerLen) // payload length (< 256)
				for _, short := range []int{0, 2} {
					frame := f[:len(f)-short]
					frame[7] = byte(len(frame) - headerLen)
					_, ok := plainPing(frame)
					d, err := newDecoder().decode(frame)
					if err != nil {
						continue
					}
					decoded++
					if !ok {
						t.Errorf("flags %d id %#x payload %d: decoded as %T, but plainPing refuses it", flags, id, len(frame)-headerLen, d)
					}
				}
			}
		}
	}
	if decoded == 0 {
		t.Fatal("the decoder accepted none of the pings: the check above never ran")
	}
}
