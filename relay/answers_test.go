package relay

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/moby/spdystream/spdy"
)

// TestSessionEndWaitsForKubeletAnswers: a client that resets an early-
// replied stream and leaves (client-go's Close right after a stream was
// created) gets its RST passed on at once, but the kubelet sees the GOAWAY
// and the close only once it has answered that stream (a spdystream kubelet
// fails the replies still queued behind a GOAWAY, answers.go), or after
// answerGrace when it never does.
func TestSessionEndWaitsForKubeletAnswers(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(kid uint32) []byte // nil: the kubelet stays silent
	}{
		{"reply", func(kid uint32) []byte {
			var enc storedEncoder
			return enc.appendSynReply(nil, kid, 0, http.Header{})
		}},
		{"refusal", func(kid uint32) []byte { return appendRst(nil, kid, rstRefusedStream) }},
		{"silence", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newRawHarness(t, Options{EarlyReply: true})
			h.send(h.enc.appendSynStream(nil, 1, 0, 0, 0, 0, pairHeaders(kindData, "80", 0)))
			if r, ok := readFrame(t, h.client, h.cFramer).(*spdy.SynReplyFrame); !ok || r.StreamId != 1 {
				t.Fatalf("client got %#v, want the early reply to stream 1", r)
			}
			left := time.Now()
			h.send(appendRst(nil, 1, rstCancel))
			h.send(appendGoAway(nil, 0))

			syn, ok := readFrame(t, h.kubelet, h.kFramer).(*spdy.SynStreamFrame)
			if !ok {
				t.Fatalf("kubelet got %#v, want the SYN_STREAM", syn)
			}
			kid := uint32(syn.StreamId)
			if r, ok := readFrame(t, h.kubelet, h.kFramer).(*spdy.RstStreamFrame); !ok || uint32(r.StreamId) != kid || r.Status != rstCancel {
				t.Fatalf("kubelet got %#v, want the client's RST of stream %d", r, kid)
			}
			if tt.answer != nil {
				// Nothing more comes while the kubelet has not answered.
				_ = h.kubelet.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if f, err := h.kFramer.ReadFrame(); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("before the kubelet answered it got %#v, %v; want nothing", f, err)
				}
				if _, err := h.kubelet.Write(tt.answer(kid)); err != nil {
					t.Fatal(err)
				}
			}
			if g, ok := readFrame(t, h.kubelet, h.kFramer).(*spdy.GoAwayFrame); !ok {
				t.Fatalf("kubelet got %#v, want the client's GOAWAY", g)
			}
			waited := time.Since(left)
			expectEOF(t, h.kubelet, "after the GOAWAY, the kubelet side")
			end := <-h.end
			h.end <- end
			if end.By != "client" || end.Err != nil {
				t.Fatalf("end = %+v, want a clean end by the client", end)
			}
			if tt.answer == nil && waited < answerGrace {
				t.Fatalf("a silent kubelet got the GOAWAY %v after the client left, want at least %v", waited, answerGrace)
			}
		})
	}
}

// expectEOF fails unless c (what side names) reads nothing more and
// then EOF within 5 s: the relay closed it.
func expectEOF(t *testing.T, c net.Conn, side string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) > 0 {
		t.Fatalf("%s read %d bytes, %v; want EOF", side, len(b), err)
	}
}
