package netconn

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// pipe is one TLS connection over loopback TCP; the client's raw side is a
// Conn when wrap is set.
func pipe(t testing.TB, wrap bool) (client, server *tls.Conn) {
	t.Helper()
	ca, err := pki.NewCA("netconn test")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.Loopback("server"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if wrap {
		raw = NewConn(raw)
	}
	srvRaw, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	server = tls.Server(srvRaw, &tls.Config{Certificates: []tls.Certificate{kp.TLS}})
	client = tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// writes is this process's write system calls so far (/proc/self/io).
func writes(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no syscw in /proc/self/io")
	return 0
}

// send writes n writes of size bytes through w and checks that the peer
// reads every byte; it returns the write system calls made meanwhile.
func send(t testing.TB, client, server *tls.Conn, w io.Writer, size, n int) int64 {
	t.Helper()
	frame := make([]byte, size)
	for i := range frame {
		frame[i] = byte(i * 7)
	}
	want := sha256.New()
	type result struct {
		sum []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		h := sha256.New()
		_, err := io.CopyN(h, server, int64(size*n))
		done <- result{h.Sum(nil), err}
	}()
	before := writes(t)
	for i := range n {
		frame[0] = byte(i)
		want.Write(frame)
		if m, err := w.Write(frame); err != nil || m != size {
			t.Fatalf("write %d: %d, %v", i, m, err)
		}
	}
	after := writes(t)
	r := <-done
	if r.err != nil {
		t.Fatalf("reading: %v", r.err)
	}
	if !bytes.Equal(r.sum, want.Sum(nil)) {
		t.Fatal("the bytes read differ from those written")
	}
	return after - before
}

// TestWriterSystemCalls checks the point of the package: through Writer, a
// relayed frame longer than a record costs one write system call fewer
// when its remainder is short, and the bytes arrive intact every time.
func TestWriterSystemCalls(t *testing.T) {
	const frames = 200
	for _, tc := range []struct {
		name     string
		size     int
		wrap     bool
		perWrite int64 // write system calls per Write
	}{
		{"32 KiB frame, plain tls.Conn", 32768 + 8, false, 3},
		{"32 KiB frame, coalesced", 32768 + 8, true, 2},
		{"two frames and a header", 2*(32768+8) + 8, true, 4},
		{"remainder at the limit", 2*16384 + maxHeldPlain, true, 2},
		{"remainder past the limit", 2*16384 + maxHeldPlain + 1, true, 3},
		{"whole records", 2 * 16384, true, 2},
		{"one record", 16384, true, 1},
		{"short write", 100, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := pipe(t, tc.wrap)
			w := Writer(client)
			if _, joined := w.(*writer); joined != tc.wrap {
				t.Fatalf("Writer over wrap=%v: %T", tc.wrap, w)
			}
			send(t, client, server, w, 1<<20, 1) // past crypto/tls's small first records
			got := send(t, client, server, w, tc.size, frames)
			// A full socket buffer splits a write in two (a slow reader,
			// GOMAXPROCS 1, -race), and other goroutines of the test
			// binary may write: allow a tenth of a call per write, well
			// under the one call per write a missed join would add.
			if want := tc.perWrite * frames; got < want || got > want+frames/10 {
				t.Errorf("%d write system calls for %d writes of %d bytes, want %d", got, frames, tc.size, want)
			}
		})
	}
}

// rec is a net.Conn that records each Write it gets.
type rec struct {
	net.Conn
	got  [][]byte
	fail error
}

func (r *rec) Write(p []byte) (int, error) {
	if r.fail != nil {
		return 0, r.fail
	}
	r.got = append(r.got, bytes.Clone(p))
	return len(p), nil
}

func TestConnHold(t *testing.T) {
	small, big := []byte("head"), bytes.Repeat([]byte("b"), MaxHeld+1)
	for _, tc := range []struct {
		name  string
		steps func(c *Conn)
		want  []string // what reaches the connection, write by write
	}{
		{"not holding: straight through", func(c *Conn) { c.Write(small); c.Write(small) }, []string{"head", "head"}},
		{"held then joined", func(c *Conn) { c.Hold(); c.Write(small); c.Write(big); c.Release() }, []string{"head" + string(big)}},
		{"held then released", func(c *Conn) { c.Hold(); c.Write(small); c.Release() }, []string{"head"}},
		{"long write not held", func(c *Conn) { c.Hold(); c.Write(big); c.Release() }, []string{string(big)}},
		{"second short write joins the first", func(c *Conn) { c.Hold(); c.Write(small); c.Write([]byte("x")); c.Release() }, []string{"headx"}},
		{"release without a write", func(c *Conn) { c.Hold(); c.Release(); c.Write(small) }, []string{"head"}},
		{"short writes held while they fit together", func(c *Conn) {
			c.Hold()
			c.Write(small)
			c.Write([]byte("x"))
			c.Write([]byte("y"))
			c.Write(big)
			c.Release()
		}, []string{"headxy" + string(big)}},
		{"a short write past the held bound goes with the held ones", func(c *Conn) {
			c.Hold()
			c.Write(small)
			c.Write(big[:MaxHeld-3])
			c.Release()
		}, []string{"head" + string(big[:MaxHeld-3])}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &rec{}
			c := NewConn(r)
			tc.steps(c)
			// net.Buffers falls back to one Write per buffer on a conn
			// without writev: join consecutive ones to compare contents.
			var got []string
			for _, b := range r.got {
				got = append(got, string(b))
			}
			if g, w := strings.Join(got, ""), strings.Join(tc.want, ""); g != w {
				t.Errorf("got %q, want %q", g, w)
			}
			if c.pending != nil {
				t.Errorf("%d bytes still held", len(c.pending))
			}
		})
	}
}

func TestConnErrors(t *testing.T) {
	boom := errors.New("boom")
	r := &rec{}
	c := NewConn(r)
	c.Hold()
	if n, err := c.Write([]byte("head")); n != 4 || err != nil {
		t.Fatalf("held write: %d, %v", n, err)
	}
	r.fail = boom
	if n, err := c.Write(bytes.Repeat([]byte("b"), MaxHeld)); n != 0 || !errors.Is(err, boom) {
		t.Errorf("joined write on a broken connection: %d, %v; want 0, boom", n, err)
	}
	if err := c.Release(); err != nil {
		t.Errorf("Release after the failed join: %v (nothing should be held)", err)
	}
	c.Hold()
	r.fail = nil
	c.Write([]byte("head"))
	r.fail = boom
	if err := c.Release(); !errors.Is(err, boom) {
		t.Errorf("Release of a held record on a broken connection: %v, want boom", err)
	}
}

func TestWriterPassesOtherWriters(t *testing.T) {
	var b bytes.Buffer
	if w := Writer(&b); w != io.Writer(&b) {
		t.Errorf("Writer(*bytes.Buffer) = %T, want the buffer", w)
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkFrames sends 32 KiB SPDY-sized frames over one loopback TLS
// connection, as crypto/tls writes them and through Writer; it reports
// the process's CPU per GiB (both ends) and write system calls per MiB.
//
//	go test ./netconn -run '^$' -bench Frames -count 6
func BenchmarkFrames(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := "plain"
		if wrap {
			name = "coalesced"
		}
		b.Run(name, func(b *testing.B) {
			client, server := pipe(b, wrap)
			w := Writer(client)
			send(b, client, server, w, 1<<20, 1) // checked once, then not hashed
			drained := make(chan error, 1)
			go func() { _, err := io.Copy(io.Discard, server); drained <- err }()
			frame := make([]byte, 32768+8)
			b.SetBytes(int64(len(frame)))
			cpu0, w0 := cpuSeconds(), writes(b)
			for b.Loop() {
				if _, err := w.Write(frame); err != nil {
					b.Fatal(err)
				}
			}
			calls := writes(b) - w0
			client.Close()
			<-drained
			mib := float64(b.N) * float64(len(frame)) / (1 << 20)
			b.ReportMetric((cpuSeconds()-cpu0)/(mib/1024), "CPU-s/GiB")
			b.ReportMetric(float64(calls)/mib, "writes/MiB")
		})
	}
}
