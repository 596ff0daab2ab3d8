package streams

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/portforward"
)

// TestClientGo: what a kubectl user meets, through client-go's
// PortForwarder over SPDY and over the WebSocket tunnel. Both dialers carry
// the same SPDY session, so they share each case's golden.
func TestClientGo(t *testing.T) {
	var cases []matrixCase
	for _, kind := range []dialKind{dialSPDY, dialTunnel} {
		for _, c := range []matrixCase{
			{name: "1 half-close", run: cgHalfClose, want: wantCGHalfClose},
			{name: "2 pod half-closes first", run: cgPodHalfClosesFirst, want: wantCGPodHalfClosesFirst},
			{name: "3 pod closes first, session survives", run: cgSessionSurvives, want: wantCGSessionSurvives},
			{name: "4 local reset", run: cgLocalReset, want: wantCGLocalReset},
			{name: "5 port not listening", run: cgPortNotListening, want: wantCGPortNotListening,
				alts: []string{wantCGPortNotListeningReset}},
			{name: "11a stopped with a connection open", run: cgStopped, want: wantCGStopped},
			{name: "11b kubelet dies", run: cgKubeletDies, want: wantCGKubeletDies},
		} {
			run := c.run
			c.name = string(kind) + "/" + c.name
			c.run = func(t *testing.T, e *env) result { e.kind = kind; return run(t, e) }
			cases = append(cases, c)
		}
	}
	runMatrix(t, cases)
}

func cgHalfClose(t *testing.T, e *env) result {
	p := startPod(t, e)
	f := startForward(t, e, e.kind, portDigest)
	c := f.dial(portDigest)
	if _, err := io.Copy(c, bytes.NewReader(payloadUp)); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	f.logf("local: wrote %s, half-closed", describe(payloadUp))
	f.readToEOF(c, "local")
	f.logf("%v", p.event(t))
	return f.result()
}

const wantCGHalfClose = `
log:
  local: wrote 3145851B=up, half-closed
  local: read 65568B=sha(up)+down[:64K] then EOF
  pod 8002 read 3145851B=up then EOF
  stopped; ForwardPorts returned: <nil>
frames:
> SYN s1 {port=8002 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8002 requestid=0 streamtype=data}
> DATA s2 3145851B=up
> FIN s2
> GOAWAY last=0 status=0
< REPLY s1 {}
< REPLY s2 {}
< DATA s2 65568B=sha(up)+down[:64K]
< FIN s1
< FIN s2
`

func cgPodHalfClosesFirst(t *testing.T, e *env) result {
	p := startPod(t, e)
	f := startForward(t, e, e.kind, portHalfClose)
	c := f.dial(portHalfClose)
	b := make([]byte, len(payloadHalf))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	f.logf("local: read %s", describe(b))
	// Answer within the kubelet's 1 s linger, then half-close: client-go
	// half-closes the data stream, so its later Reset sends nothing.
	if _, err := c.Write(payloadUp[:1024]); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	f.logf("%v", p.event(t))
	f.readToEOF(c, "local")
	f.waitFrame("< FIN s2")
	return f.result()
}

const wantCGPodHalfClosesFirst = `
log:
  local: read 65536B=down[:64K]
  pod 8004 read 1024B=up[:1K] then EOF
  local: read 0B=empty then EOF
  stopped; ForwardPorts returned: <nil>
frames:
> SYN s1 {port=8004 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8004 requestid=0 streamtype=data}
> DATA s2 1024B=up[:1K]
> FIN s2
> GOAWAY last=0 status=0
< REPLY s1 {}
< REPLY s2 {}
< DATA s2 65536B=down[:64K]
< FIN s1
< FIN s2
`

func cgSessionSurvives(t *testing.T, e *env) result {
	p := startPod(t, e)
	f := startForward(t, e, e.kind, portCloser, portEcho)
	// The local side never half-closes: client-go resets the data stream.
	f.readToEOF(f.dial(portCloser), "local 1")
	c := f.dial(portEcho)
	go func() { _, _ = io.Copy(c, bytes.NewReader(payloadUp)) }()
	// Half-close only once the whole echo is back, as in the raw echo:
	// the kubelet's 1 s linger after the FIN is too short under load.
	echoed := make([]byte, len(payloadUp))
	if _, err := io.ReadFull(c, echoed); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	rest := f.readToEOF(c, "local 2 after its half-close")
	f.logf("local 2: echoed %s", describe(append(echoed, rest...)))
	f.logf("%v", p.event(t))
	if f.ended(0) {
		t.Error("ForwardPorts ended after a pod closed first")
	}
	return f.result()
}

const wantCGSessionSurvives = `
log:
  local 1: read 1048653B=down then EOF
  local 2 after its half-close: read 0B=empty then EOF
  local 2: echoed 3145851B=up
  pod 8001 read 3145851B=up then EOF
  stopped; ForwardPorts returned: <nil>
frames:
> SYN s1 {port=8003 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8003 requestid=0 streamtype=data}
> RST s2 CANCEL
> SYN s3 {port=8001 requestid=1 streamtype=error}
> FIN s3
> SYN s4 {port=8001 requestid=1 streamtype=data}
> DATA s4 3145851B=up
> FIN s4
> GOAWAY last=0 status=0
< REPLY s1 {}
< REPLY s2 {}
< DATA s2 1048653B=down
< FIN s1
< FIN s2
< REPLY s3 {}
< REPLY s4 {}
< DATA s4 3145851B=up
< FIN s3
< FIN s4
`

func cgLocalReset(t *testing.T, e *env) result {
	p := startPod(t, e)
	f := startForward(t, e, e.kind, portSink)
	c := f.dial(portSink)
	if _, err := io.Copy(c, bytes.NewReader(payloadUp)); err != nil {
		t.Fatal(err)
	}
	p.waitRead(t, len(payloadUp)) // nothing in flight when the reset comes
	_ = c.SetLinger(0)
	_ = c.Close() // RST: client-go's local read fails
	f.logf("local: wrote %s, reset", describe(payloadUp))
	f.logf("%v", p.event(t))
	f.waitFrame("< FIN s1")
	// The kubelet's handler closes the error stream before the data
	// stream (deferred Closes, cri-streaming's portForward): after the
	// client's FIN of s2, the kubelet's comes after FIN s1.
	if strings.Contains("\n"+string(f.frames()), "\n> FIN s2\n") {
		f.waitFrame("< FIN s2")
	}
	r := f.result()
	r.frames = finOrReset(t, r.frames, "s2")
	return r
}

// finOrReset merges the two ways client-go ends a data stream whose local
// connection failed. Its copy goroutine half-closes the stream (deferred
// Close) while handleConnection resets it, and whichever runs first wins:
// "> FIN s2" (and the kubelet then FINs s2 too) or "> RST s2 CANCEL" (and
// the kubelet's FIN may still follow, invisible to the client: the
// spdystream race of the raw case 4a).
func finOrReset(t *testing.T, tr transcript, s string) transcript {
	t.Helper()
	lines := strings.Split(string(tr), "\n")
	fin, rst, kfin := "> FIN "+s, "> RST "+s+" CANCEL", "< FIN "+s
	has := func(l string) bool {
		for _, x := range lines {
			if x == l {
				return true
			}
		}
		return false
	}
	if has(fin) && !has(kfin) {
		t.Errorf("client sent FIN %s, the kubelet did not", s)
	}
	var out []string
	for _, l := range lines {
		switch l {
		case fin, rst:
			out = append(out, "> FIN|RST "+s)
		case kfin:
		default:
			out = append(out, l)
		}
	}
	return transcript(strings.Join(out, "\n"))
}

const wantCGLocalReset = `
log:
  local: wrote 3145851B=up, reset
  pod 8005 read 3145851B=up then EOF
  stopped; ForwardPorts returned: <nil>
frames:
> SYN s1 {port=8005 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8005 requestid=0 streamtype=data}
> DATA s2 3145851B=up
> FIN|RST s2
> GOAWAY last=0 status=0
< REPLY s1 {}
< REPLY s2 {}
< FIN s1
`

func cgPortNotListening(t *testing.T, e *env) result {
	startPod(t, e)
	f := startForward(t, e, e.kind, portRefused)
	f.readToEOF(f.dial(portRefused), "local")
	f.waitFrame("< RST s1 CANCEL")
	// With the error text read, client-go closes the session; in the
	// kubelet race of wantCGPortNotListeningReset it never reads it.
	f.ended(2 * time.Second)
	r := f.result()
	r.frames = dropLines(r.frames, "< REPLY s2 {}") // races the reset, see the raw case 5
	return r
}

const wantCGPortNotListening = `
log:
  local: read 0B=empty then EOF
  ForwardPorts returned: lost connection to pod
frames:
> SYN s1 {port=8007 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8007 requestid=0 streamtype=data}
> GOAWAY last=0 status=0
< REPLY s1 {}
< DATA s1 "error forwarding port 8007 to pod p_default, uid uid-default-p: failed to connect to localhost:8007 inside namespace \"uid-default-p\": dial tcp pod:8007: connect: connection refused"
< RST s2 CANCEL
< RST s1 CANCEL
`

// wantCGPortNotListeningReset: the kubelet's reset of the data stream beat
// its reply (raw case 5), client-go logs "Error creating forwarding stream:
// Stream reset", closes only the local connection and the session lives on.
const wantCGPortNotListeningReset = `
log:
  local: read 0B=empty then EOF
  stopped; ForwardPorts returned: <nil>
frames:
> SYN s1 {port=8007 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8007 requestid=0 streamtype=data}
> GOAWAY last=0 status=0
< REPLY s1 {}
< DATA s1 "error forwarding port 8007 to pod p_default, uid uid-default-p: failed to connect to localhost:8007 inside namespace \"uid-default-p\": dial tcp pod:8007: connect: connection refused"
< RST s2 CANCEL
< RST s1 CANCEL
`

func cgStopped(t *testing.T, e *env) result {
	p := startPod(t, e)
	f := startForward(t, e, e.kind, portEcho)
	c := f.dial(portEcho)
	if _, err := c.Write(payloadUp[:1024]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1024)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	f.logf("local: echoed %s", describe(b))
	r := f.result() // Ctrl-C: reset the open streams, GOAWAY
	f.logf("%v", p.event(t))
	f.mu.Lock()
	r.log = append([]string(nil), f.log...)
	f.mu.Unlock()
	return r
}

const wantCGStopped = `
log:
  local: echoed 1024B=up[:1K]
  stopped; ForwardPorts returned: <nil>
  pod 8001 read 1024B=up[:1K] then EOF
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8001 requestid=0 streamtype=data}
> DATA s2 1024B=up[:1K]
> RST s2 CANCEL
> GOAWAY last=0 status=0
< REPLY s1 {}
< REPLY s2 {}
< DATA s2 1024B=up[:1K]
`

func cgKubeletDies(t *testing.T, e *env) result {
	p := startPod(t, e)
	f := startForward(t, e, e.kind, portEcho)
	c := f.dial(portEcho)
	if _, err := c.Write(payloadUp[:1024]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1024)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	f.logf("local: echoed %s", describe(b))
	if err := e.cluster.Kubelet.Close(); err != nil {
		t.Errorf("kubelet Close: %v", err)
	}
	if !f.ended(10 * time.Second) {
		t.Error("ForwardPorts still running 10s after the kubelet died")
	}
	f.readToEOF(c, "local")
	f.logf("%v", p.event(t))
	if err := <-f.done; !errors.Is(err, portforward.ErrLostConnectionToPod) {
		t.Errorf("ForwardPorts: %v, want %v", err, portforward.ErrLostConnectionToPod)
	}
	f.done <- nil
	r := f.result()
	// As in the raw case 11c: the test kubelet's Close lets FINs race out.
	r.frames = dropLines(dropLines(r.frames, "< FIN s1"), "< FIN s2")
	// Once its connection is lost client-go resets the open data stream
	// and sends GOAWAY (ForwardPorts' deferred Close). Whether that gets
	// out before the socket is gone is a race: through the gateway the
	// WebSocket tunnel ends with a close frame first, which leaves time.
	r.frames = dropLines(dropLines(r.frames, "> RST s2 CANCEL"), "> GOAWAY last=0 status=0")
	// With that GOAWAY out, the server's close is left out of the
	// transcript (decodeWire); the log's ErrLostConnectionToPod says it.
	r.frames = dropLines(r.frames, "< END")
	return r
}

const wantCGKubeletDies = `
log:
  local: echoed 1024B=up[:1K]
  ForwardPorts returned: lost connection to pod
  local: read 0B=empty then EOF
  pod 8001 read 1024B=up[:1K] then EOF
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8001 requestid=0 streamtype=data}
> DATA s2 1024B=up[:1K]
< REPLY s1 {}
< REPLY s2 {}
< DATA s2 1024B=up[:1K]
`
