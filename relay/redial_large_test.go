package relay

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// failingWriter fails once broken is set, as a kubelet connection cut
// while the gateway writes to it; a frame header alone still goes through,
// so the failure comes in the middle of a large frame's payload.
type failingWriter struct {
	w      io.Writer
	broken *atomic.Bool
}

func (f failingWriter) Write(p []byte) (int, error) {
	if f.broken.Load() && len(p) > headerLen {
		return 0, errors.New("write: broken pipe")
	}
	return f.w.Write(p)
}

// A DATA frame larger than the read buffer is streamed through (largeData);
// a failed write to the kubelet there is the kubelet connection's loss, not
// the client's end: the session goes on and the next forward re-dials.
// Found by the soak, whose raw client writes frames of up to 128 KiB.
func TestRedialAfterAFailedWriteOfALargeFrame(t *testing.T) {
	p := newKubeletPool(t, replyAndEcho)
	var broken atomic.Bool
	p.firstW = func(c net.Conn) io.Writer { return failingWriter{c, &broken} }
	h := startRedialRelay(t, p, Options{})
	checkEcho(t, h, 0) // 256 KiB frames both ways: largeData

	errS, data := h.forward("8080", 1)
	go func() { _, _ = io.Copy(io.Discard, errS) }()
	broken.Store(true)
	if _, err := data.Write(randomBytes(t, 4*bufSize)); err != nil {
		t.Fatal(err)
	}
	if rec := h.recordOf("1"); rec.Outcome != OutcomeKubeletGone {
		t.Fatalf("record %+v, want outcome %s", rec, OutcomeKubeletGone)
	}
	sessionAlive(t, h)
	checkEcho(t, h, 2)
	if n := p.dialCount(); n != 2 {
		t.Fatalf("%d dials, want 2 (the first and one redial)", n)
	}
}
