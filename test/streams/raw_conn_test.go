package streams

import (
	"testing"
	"time"
)

// TestRawConnection: the SPDY connection itself (§11 cases 10–11): pings,
// the kubelet's idle timeout, and either end going away.
func TestRawConnection(t *testing.T) {
	runMatrix(t, []matrixCase{
		{name: "10a pings are answered", run: rawPings, want: wantPings},
		{name: "10b idle kubelet closes a silent session", opts: clusterOpts{idleTimeout: time.Second},
			run: rawIdleSilent, want: wantIdleSilent},
		// Slow because the relay mirrors client pings to the kubelet at most
		// every 5 s (§6), so the idle timeout must exceed that.
		{name: "10c pings keep an idle kubelet session", opts: clusterOpts{idleTimeout: 6 * time.Second}, slow: true,
			run: rawIdlePinging, want: wantIdlePinging},
		{name: "11a client closes gracefully", run: rawClientGoAway, want: wantClientGoAway},
		{name: "11b client connection drops", run: rawClientDrops, want: wantClientDrops},
		{name: "11c kubelet dies", run: rawKubeletDies, want: wantKubeletDies},
	})
}

// ping sends a PING and logs whether its echo came back.
func ping(t *testing.T, c *rawClient) {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := c.conn.Ping(); done <- err }()
	if err := recv(t, done, 10*time.Second, "the ping's echo"); err != nil {
		c.logf("ping: %v", err)
		return
	}
	c.logf("ping: answered")
}

func rawPings(t *testing.T, e *env) result {
	p := startPod(t, e)
	c := dialRaw(t, e, "p")
	ping(t, c)
	f := c.mustOpen(port(portEcho), "0")
	ping(t, c) // with a pair open
	echo(t, c, f, payloadUp[:1024])
	c.logf("%v", p.event(t))
	f.errorText()
	ping(t, c)
	return c.result()
}

const wantPings = `
log:
  ping: answered
  create error 0: ok
  create data 0: ok
  ping: answered
  data stream 0: read 1024B=up[:1K] then EOF
  pod 8001 read 1024B=up[:1K] then EOF
  error stream 0: ""
  ping: answered
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8001 requestid=0 streamtype=data}
> DATA s2 1024B=up[:1K]
> FIN s2
< REPLY s1 {}
< REPLY s2 {}
< DATA s2 1024B=up[:1K]
< FIN s1
< FIN s2
`

func rawIdleSilent(t *testing.T, e *env) result {
	startPod(t, e)
	c := dialRaw(t, e, "p")
	c.waitClosed(10 * time.Second)
	return c.result()
}

const wantIdleSilent = `
log:
  connection closed by the server
frames:
< GOAWAY last=0 status=0
`

func rawIdlePinging(t *testing.T, e *env) result {
	p := startPod(t, e)
	c := dialRaw(t, e, "p")
	for range 8 {
		time.Sleep(time.Second)
		if _, err := c.conn.Ping(); err != nil {
			t.Fatalf("ping: %v", err)
		}
	}
	c.logf("8 s of pings, no other frame")
	f := c.mustOpen(port(portEcho), "0")
	echo(t, c, f, payloadUp[:1024])
	c.logf("%v", p.event(t))
	f.errorText()
	return c.result()
}

const wantIdlePinging = `
log:
  8 s of pings, no other frame
  create error 0: ok
  create data 0: ok
  data stream 0: read 1024B=up[:1K] then EOF
  pod 8001 read 1024B=up[:1K] then EOF
  error stream 0: ""
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8001 requestid=0 streamtype=data}
> DATA s2 1024B=up[:1K]
> FIN s2
< REPLY s1 {}
< REPLY s2 {}
< DATA s2 1024B=up[:1K]
< FIN s1
< FIN s2
`

// openEcho opens a pair to the echo port and round-trips 1 KiB, leaving the
// pair open.
func openEcho(t *testing.T, c *rawClient) *fwd {
	t.Helper()
	f := c.mustOpen(port(portEcho), "0")
	send(t, f.dataS, payloadUp[:1024])
	c.logf("data stream: read %s", describe(readN(t, f.dataS, 1024)))
	return f
}

func rawClientGoAway(t *testing.T, e *env) result {
	p := startPod(t, e)
	c := dialRaw(t, e, "p")
	f := openEcho(t, c)
	// client-go's connection.Close: reset every stream (a RST only for the
	// data stream, the error stream is half-closed already), then GOAWAY.
	c.wire.closing()
	_ = f.errS.Reset()
	_ = f.dataS.Reset()
	if err := c.conn.Close(); err != nil {
		t.Fatal(err)
	}
	c.logf("%v", p.event(t))
	return c.result()
}

const wantClientGoAway = `
log:
  create error 0: ok
  create data 0: ok
  data stream: read 1024B=up[:1K]
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

func rawClientDrops(t *testing.T, e *env) result {
	p := startPod(t, e)
	c := dialRaw(t, e, "p")
	openEcho(t, c)
	c.close() // kubectl killed: TCP close, no frame
	c.logf("%v", p.event(t))
	return c.result()
}

const wantClientDrops = `
log:
  create error 0: ok
  create data 0: ok
  data stream: read 1024B=up[:1K]
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

func rawKubeletDies(t *testing.T, e *env) result {
	p := startPod(t, e)
	c := dialRaw(t, e, "p")
	openEcho(t, c)
	if err := e.cluster.Kubelet.Close(); err != nil {
		t.Errorf("kubelet Close: %v", err)
	}
	c.waitClosed(10 * time.Second)
	c.logf("%v", p.event(t))
	r := c.result()
	// The test kubelet's Close cancels its forwards before it closes the
	// connections, so the FINs of a forward that returns in between may
	// or may not get out; a real node dying sends nothing.
	r.frames = dropLines(dropLines(r.frames, "< FIN s1"), "< FIN s2")
	return r
}

const wantKubeletDies = `
log:
  create error 0: ok
  create data 0: ok
  data stream: read 1024B=up[:1K]
  connection closed by the server
  pod 8001 read 1024B=up[:1K] then EOF
frames:
> SYN s1 {port=8001 requestid=0 streamtype=error}
> FIN s1
> SYN s2 {port=8001 requestid=0 streamtype=data}
> DATA s2 1024B=up[:1K]
< REPLY s1 {}
< REPLY s2 {}
< DATA s2 1024B=up[:1K]
< END
`
