package streams

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/moby/spdystream/spdy"
)

// A transcript is the normalised client-side view of one SPDY session: the
// frames the client sent ("> " lines) and received ("< " lines), each
// direction in wire order. Normalisation keeps what the protocol makes
// deterministic and drops what timing decides:
//   - stream ids become s1, s2, … in the order the client opened them;
//   - PING frames are dropped;
//   - header blocks are printed as sorted key=value sets;
//   - consecutive DATA frames of a stream in one direction become one DATA
//     line at the position of the first (frame boundaries depend on TCP
//     reads in the pod and kubelet), data-stream payloads are printed as
//     length and name (or sha256 prefix), error-stream payloads as text
//     with the kubelet's conn=%p pointer masked; a FIN is its own line;
//   - "< END" says the server ended the connection before the client
//     started closing it; what the server sends once the client has
//     started closing (or after the client's GOAWAY) races with the
//     close and is left out.
type transcript string

// payloadNames maps the sha256 of a payload a case sends or expects to a
// name printed in transcripts instead of the hash.
var payloadNames sync.Map

func namePayload(name string, b []byte) {
	sum := sha256.Sum256(b)
	payloadNames.Store(hex.EncodeToString(sum[:]), name)
}

var (
	connPointer = regexp.MustCompile(`conn=0x[0-9a-f]+`)
	loopback    = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)
)

// namer masks what differs between runs in texts: the addresses of the
// case's pods by name, other loopback addresses (the kubelet's ephemeral
// ports) by "127.0.0.1:*".
type namer struct {
	mu    sync.Mutex
	names map[string]string // 127.0.0.1:N → name
}

func (n *namer) add(addr, name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.names == nil {
		n.names = map[string]string{}
	}
	n.names[addr] = name
}

func (n *namer) Replace(s string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return loopback.ReplaceAllStringFunc(s, func(addr string) string {
		if name, ok := n.names[addr]; ok {
			return name
		}
		return "127.0.0.1:*"
	})
}

// describe names a payload for logs: its length and name or hash prefix.
func describe(b []byte) string {
	sum := sha256.Sum256(b)
	if name, ok := payloadNames.Load(hex.EncodeToString(sum[:])); ok {
		return fmt.Sprintf("%dB=%v", len(b), name)
	}
	return fmt.Sprintf("%dB sha256:%x", len(b), sum[:6])
}

// dropLines removes every line equal to l.
func dropLines(tr transcript, l string) transcript {
	var out []string
	for _, x := range strings.Split(string(tr), "\n") {
		if x != l {
			out = append(out, x)
		}
	}
	return transcript(strings.Join(out, "\n"))
}

// decodeWire renders w's recording; names masks addresses in error texts.
func decodeWire(w *wire, names *namer) transcript {
	out, in, ended := w.snapshot()
	if w.ws {
		out, in = unwrapWebSocket(out), unwrapWebSocket(in)
	}
	ids := newIDMap()
	ids.mask = names
	outLines := renderDirection(out, ids, true)
	inLines := renderDirection(in, ids, false)
	if ended {
		inLines = append(inLines, "END")
	}
	if slices.ContainsFunc(outLines, func(l string) bool { return strings.HasPrefix(l, "GOAWAY") }) {
		// After the client's GOAWAY the server's own GOAWAY and close race
		// with the client closing the connection (client-go closes it as
		// soon as its streams are gone): keep only what came before.
		for len(inLines) > 0 && (inLines[len(inLines)-1] == "END" || strings.HasPrefix(inLines[len(inLines)-1], "GOAWAY")) {
			inLines = inLines[:len(inLines)-1]
		}
	}
	var b strings.Builder
	for _, l := range outLines {
		b.WriteString("> " + l + "\n")
	}
	for _, l := range inLines {
		b.WriteString("< " + l + "\n")
	}
	return transcript(b.String())
}

// idMap names stream ids by the client's SYN_STREAM order.
type idMap struct {
	names map[spdy.StreamId]string
	types map[spdy.StreamId]string // streamType header
	next  int

	mask *namer // masks addresses in error texts
}

func newIDMap() *idMap {
	return &idMap{names: map[spdy.StreamId]string{}, types: map[spdy.StreamId]string{}}
}

func (m *idMap) open(id spdy.StreamId, streamType string) {
	if _, ok := m.names[id]; !ok {
		m.next++
		m.names[id] = fmt.Sprintf("s%d", m.next)
		m.types[id] = streamType
	}
}

func (m *idMap) name(id spdy.StreamId) string {
	if id == 0 {
		return "0"
	}
	if n, ok := m.names[id]; ok {
		return n
	}
	return fmt.Sprintf("x%d", id) // a stream the client never opened
}

// dataRun accumulates one stream's consecutive DATA payload.
type dataRun struct {
	line  int // index of its line in the output
	id    spdy.StreamId
	n     int
	h     hash.Hash
	text  []byte // error streams only
	isErr bool
}

func (r *dataRun) render(ids *idMap) string {
	if r.isErr {
		return fmt.Sprintf("DATA %s %q", ids.name(r.id), ids.mask.Replace(maskConn(string(r.text))))
	}
	sum := hex.EncodeToString(r.h.Sum(nil))
	if name, ok := payloadNames.Load(sum); ok {
		return fmt.Sprintf("DATA %s %dB=%s", ids.name(r.id), r.n, name)
	}
	return fmt.Sprintf("DATA %s %dB sha256:%s", ids.name(r.id), r.n, sum[:12])
}

func renderDirection(raw []byte, ids *idMap, out bool) []string {
	f, err := spdy.NewFramer(io.Discard, bytes.NewReader(raw))
	if err != nil {
		return []string{"FRAMER-ERROR " + err.Error()}
	}
	var lines []string
	runs := map[spdy.StreamId]*dataRun{}
	endRun := func(id spdy.StreamId) {
		if r := runs[id]; r != nil {
			lines[r.line] = r.render(ids)
			delete(runs, id)
		}
	}
	for {
		fr, err := f.ReadFrame()
		if err != nil {
			// A frame cut short at the end is the connection closing while
			// the peer wrote it (spdystream writes a frame in several
			// writes): the same race as a whole frame arriving or not
			// after the close, so it ends the transcript like EOF does.
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				lines = append(lines, "DECODE-ERROR "+err.Error())
			}
			break
		}
		switch fr := fr.(type) {
		case *spdy.DataFrame:
			if len(fr.Data) > 0 {
				r := runs[fr.StreamId]
				if r == nil {
					r = &dataRun{line: len(lines), id: fr.StreamId, h: sha256.New(), isErr: ids.types[fr.StreamId] == "error"}
					runs[fr.StreamId] = r
					lines = append(lines, "")
				}
				r.n += len(fr.Data)
				r.h.Write(fr.Data)
				if r.isErr {
					r.text = append(r.text, fr.Data...)
				}
			}
			if fr.Flags&spdy.DataFlagFin != 0 {
				endRun(fr.StreamId)
				lines = append(lines, "FIN "+ids.name(fr.StreamId))
			}
		case *spdy.SynStreamFrame:
			if out {
				ids.open(fr.StreamId, fr.Headers.Get("streamType"))
			}
			lines = append(lines, fmt.Sprintf("SYN %s %s%s", ids.name(fr.StreamId), headerSet(fr.Headers), flags(fr.CFHeader.Flags, true)))
		case *spdy.SynReplyFrame:
			endRun(fr.StreamId)
			lines = append(lines, fmt.Sprintf("REPLY %s %s%s", ids.name(fr.StreamId), headerSet(fr.Headers), flags(fr.CFHeader.Flags, false)))
		case *spdy.RstStreamFrame:
			endRun(fr.StreamId)
			lines = append(lines, fmt.Sprintf("RST %s %s", ids.name(fr.StreamId), rstStatus(fr.Status)))
		case *spdy.PingFrame:
			// dropped: timing decides how many there are
		case *spdy.GoAwayFrame:
			lines = append(lines, fmt.Sprintf("GOAWAY last=%s status=%d", ids.name(fr.LastGoodStreamId), fr.Status))
		case *spdy.HeadersFrame:
			endRun(fr.StreamId)
			lines = append(lines, fmt.Sprintf("HEADERS %s %s%s", ids.name(fr.StreamId), headerSet(fr.Headers), flags(fr.CFHeader.Flags, false)))
		default:
			lines = append(lines, fmt.Sprintf("%T", fr))
		}
	}
	for id := range runs {
		endRun(id)
	}
	return lines
}

func headerSet(h map[string][]string) string {
	kv := make([]string, 0, len(h))
	for k, vs := range h {
		kv = append(kv, strings.ToLower(k)+"="+strings.Join(vs, ","))
	}
	sort.Strings(kv)
	return "{" + strings.Join(kv, " ") + "}"
}

func flags(f spdy.ControlFlags, syn bool) string {
	s := ""
	if f&spdy.ControlFlagFin != 0 {
		s += " FIN"
	}
	if syn && f&spdy.ControlFlagUnidirectional != 0 {
		s += " UNI"
	}
	return s
}

func rstStatus(s spdy.RstStreamStatus) string {
	names := map[spdy.RstStreamStatus]string{
		spdy.ProtocolError: "PROTOCOL_ERROR", spdy.InvalidStream: "INVALID_STREAM", spdy.RefusedStream: "REFUSED_STREAM",
		spdy.Cancel: "CANCEL", spdy.InternalError: "INTERNAL_ERROR",
	}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("status(%d)", s)
}

// unwrapWebSocket concatenates the payloads of the binary and continuation
// frames in b (the SPDY bytes of a SPDY/3.1+portforward.k8s.io tunnel),
// unmasking client frames; control frames are skipped.
func unwrapWebSocket(b []byte) []byte {
	var out []byte
	for len(b) >= 2 {
		op, masked, n := b[0]&0x0f, b[1]&0x80 != 0, uint64(b[1]&0x7f)
		h := 2
		switch n {
		case 126:
			if len(b) < 4 {
				return out
			}
			n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return out
			}
			n, h = binary.BigEndian.Uint64(b[2:]), 10
		}
		var key []byte
		if masked {
			if len(b) < h+4 {
				return out
			}
			key, h = b[h:h+4], h+4
		}
		if uint64(len(b)-h) < n {
			return out // a frame cut by the connection's end
		}
		p := b[h : h+int(n)]
		if op == 0 || op == 2 {
			for i, c := range p {
				if masked {
					c ^= key[i%4]
				}
				out = append(out, c)
			}
		}
		b = b[h+int(n):]
	}
	return out
}
