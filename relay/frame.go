package relay

import (
	"encoding/binary"
	"net/http"
	"slices"
	"strings"
)

// SPDY/3.1 framing (draft-mbelshe-httpbis-spdy-00 §2.2; spdystream's spdy
// package). Every frame starts with 8 bytes: a control bit, then either
// version+type (control) or the stream id (data), then flags and a 24-bit
// payload length.
const (
	headerLen = 8

	typeSynStream    = 1
	typeSynReply     = 2
	typeRstStream    = 3
	typeSettings     = 4
	typePing         = 6
	typeGoAway       = 7
	typeHeaders      = 8
	typeWindowUpdate = 9

	flagFin = 0x01

	// RST_STREAM status codes used by the gateway.
	rstProtocolError = 1
	rstRefusedStream = 3
	rstCancel        = 5

	// maxControlPayload bounds a control frame. port-forward's header blocks
	// are a few dozen bytes; spdystream's default (16 MiB) would let one
	// peer make the gateway inflate megabytes.
	maxControlPayload = 16 << 10
	maxHeaderCount    = 32
	maxHeaderField    = 4 << 10

	maxStreamID = 0x7fffffff
)

func isControl(h []byte) bool { return h[0]&0x80 != 0 }

func controlType(h []byte) uint16 { return binary.BigEndian.Uint16(h[2:4]) }

func frameFlags(h []byte) byte { return h[4] }

func payloadLen(h []byte) int { return int(h[5])<<16 | int(h[6])<<8 | int(h[7]) }

func dataStreamID(h []byte) uint32 { return binary.BigEndian.Uint32(h[0:4]) & maxStreamID }

func setDataStreamID(h []byte, id uint32) { binary.BigEndian.PutUint32(h[0:4], id&maxStreamID) }

// appendControlHeader appends a SPDY/3 control frame header.
func appendControlHeader(b []byte, typ uint16, flags byte, length int) []byte {
	return append(b, 0x80, 0x03, byte(typ>>8), byte(typ), flags, byte(length>>16), byte(length>>8), byte(length))
}

func appendRst(b []byte, id, status uint32) []byte {
	b = appendControlHeader(b, typeRstStream, 0, 8)
	b = binary.BigEndian.AppendUint32(b, id&maxStreamID)
	return binary.BigEndian.AppendUint32(b, status)
}

func appendPing(b []byte, id uint32) []byte {
	b = appendControlHeader(b, typePing, 0, 4)
	return binary.BigEndian.AppendUint32(b, id)
}

func appendGoAway(b []byte, lastGood uint32) []byte {
	b = appendControlHeader(b, typeGoAway, 0, 8)
	b = binary.BigEndian.AppendUint32(b, lastGood&maxStreamID)
	return binary.BigEndian.AppendUint32(b, 0) // OK
}

// appendData appends a DATA frame carrying p.
func appendData(b []byte, id uint32, flags byte, p []byte) []byte {
	n := len(p)
	b = binary.BigEndian.AppendUint32(b, id&maxStreamID)
	b = append(b, flags, byte(n>>16), byte(n>>8), byte(n))
	return append(b, p...)
}

// headerBlock is the uncompressed SPDY/3 name/value block of h: names are
// lower-cased (as spdystream writes them) and a name's values are joined
// with NUL. Names are sorted so a block's bytes do not depend on map order.
func headerBlock(h http.Header) []byte {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 64), uint32(len(names)))
	for _, k := range names {
		v := strings.Join(h[k], "\x00")
		b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, strings.ToLower(k)...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}
