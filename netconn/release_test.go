package netconn

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"
)

// inputCaps are the capacities of c's input and handshake buffers.
func inputCaps(c *tls.Conn) (raw, hand int) {
	p := unsafe.Pointer(c)
	return (*bytes.Buffer)(unsafe.Add(p, tlsInput.raw)).Cap(), (*bytes.Buffer)(unsafe.Add(p, tlsInput.handsh)).Cap()
}

// TestReleaseInput: this Go's crypto/tls has the fields ReleaseInput
// resets; after bytes have flowed its input buffer is large, ReleaseInput
// gives it back, and the connection carries every byte intact after each
// release, both ways.
func TestReleaseInput(t *testing.T) {
	if !tlsInput.ok {
		t.Fatal("crypto/tls.Conn no longer has in (a halfConn embedding sync.Mutex first), rawInput, input and hand as ReleaseInput expects: idle sessions keep their TLS buffers")
	}
	client, server := pipe(t, true)
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 20 {
		for _, dir := range []struct {
			name     string
			from, to *tls.Conn
		}{{"down", server, client}, {"up", client, server}} {
			data := make([]byte, 1<<19+rng.IntN(1<<19))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			chunks := rand.New(rand.NewPCG(uint64(round), 5)) // the writer's own
			go func() {
				for p := data; len(p) > 0; {
					n := min(len(p), 1+chunks.IntN(64<<10))
					if _, err := dir.from.Write(p[:n]); err != nil {
						return
					}
					p = p[n:]
				}
			}()
			got := make([]byte, len(data))
			if _, err := io.ReadFull(dir.to, got); err != nil {
				t.Fatalf("round %d %s: %v", round, dir.name, err)
			}
			if sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatalf("round %d %s: the bytes differ", round, dir.name)
			}
			if raw, _ := inputCaps(dir.to); raw < 16<<10 {
				t.Fatalf("round %d %s: input buffer of %d bytes after 16 KiB records", round, dir.name, raw)
			}
			if !ReleaseInput(dir.to) {
				t.Fatalf("round %d %s: an idle connection's buffers were not released", round, dir.name)
			}
			if raw, hand := inputCaps(dir.to); raw != 0 || hand != 0 {
				t.Fatalf("round %d %s: buffers of %d and %d bytes left", round, dir.name, raw, hand)
			}
			if ReleaseInput(dir.to) {
				t.Fatalf("round %d %s: released again with nothing to release", round, dir.name)
			}
		}
	}
}

// TestReleaseInputKeepsBytes: a connection is left alone while a Read runs,
// while decrypted bytes wait to be read and while a record waits to be
// decrypted; its bytes arrive intact afterwards.
func TestReleaseInputKeepsBytes(t *testing.T) {
	client, server := pipe(t, true)

	read := make(chan []byte)
	go func() {
		b := make([]byte, 16)
		n, _ := client.Read(b)
		read <- b[:n]
	}()
	time.Sleep(100 * time.Millisecond) // the Read is blocked by now
	if ReleaseInput(client) {
		t.Fatal("released during a Read")
	}
	if _, err := server.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if b := <-read; string(b) != "x" {
		t.Fatalf("read %q", b)
	}

	first, second := bytes.Repeat([]byte("a"), 100), bytes.Repeat([]byte("b"), 100)
	for _, p := range [][]byte{first, second} { // two records
		if _, err := server.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // both are in the socket: one read takes both
	got := make([]byte, 10)
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if ReleaseInput(client) {
		t.Fatal("released with 90 decrypted bytes unread")
	}
	rest := make([]byte, 90)
	if _, err := io.ReadFull(client, rest); err != nil {
		t.Fatal(err)
	}
	if ReleaseInput(client) {
		t.Fatal("released with the second record buffered")
	}
	got = append(got, rest...)
	rest = make([]byte, 100)
	if _, err := io.ReadFull(client, rest); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, first) || !bytes.Equal(rest, second) {
		t.Fatalf("read %q then %q", got, rest)
	}
	ReleaseInput(client) // what the handshake left, if large
	if _, err := server.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, got[:4]); err != nil || string(got[:4]) != "ping" {
		t.Fatalf("read %q, %v", got[:4], err)
	}
	if raw, hand := inputCaps(client); raw == 0 || raw+hand > keepInput {
		t.Fatalf("buffers of %d and %d bytes after a small record", raw, hand)
	}
	if ReleaseInput(client) {
		t.Fatal("released a small record's buffer, which the next record would allocate again")
	}

	big := bytes.Repeat([]byte("c"), 64<<10)
	go func() { _, _ = server.Write(big) }()
	got = make([]byte, len(big))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if !ReleaseInput(client) {
		t.Fatal("not released once all was read")
	}
}
