package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// floorChunk is the write size of the TLS floor: the splice's and the
// test kubelet's copy buffer, so a write is two full TLS records.
const floorChunk = 32 << 10

// floorSample is one TLS floor measurement.
type floorSample struct {
	CPUPerGiB     float64 // process CPU-seconds (user+system) per GiB
	MiBps         float64
	Reads, Writes float64 // system calls per MiB
	OtherCores    float64 // average cores busy with other processes meanwhile
	Suite         string  // negotiated TLS version and cipher suite
}

// tlsPair is a connected TLS client and server on loopback with the
// certificates the dev cluster issues (ECDSA P-256), handshaken.
func tlsPair() (client, server *tls.Conn, err error) {
	ca, err := pki.NewCA("bench-floor-ca")
	if err != nil {
		return nil, nil, err
	}
	kp, err := ca.Issue(pki.Loopback("bench-floor"))
	if err != nil {
		return nil, nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{kp.TLS}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type accepted struct {
		c   *tls.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- accepted{nil, err}
			return
		}
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		_ = tc.SetDeadline(time.Time{})
		ch <- accepted{tc, err}
	}()
	d := &net.Dialer{Timeout: 10 * time.Second}
	client, err = tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	if err != nil {
		ln.Close() // ends a pending Accept
	}
	a := <-ch
	if err == nil {
		err = a.err
	}
	if err != nil {
		if client != nil {
			client.Close()
		}
		if a.c != nil {
			a.c.Close()
		}
		return nil, nil, err
	}
	return client, a.c, nil
}

// measureFloor moves size bytes over one TLS connection inside this
// process, a sender goroutine encrypting 32 KiB writes and a receiver
// decrypting, and returns the process's CPU time per GiB for the transfer.
func measureFloor(size int64) (floorSample, error) {
	client, server, err := tlsPair()
	if err != nil {
		return floorSample{}, fmt.Errorf("TLS floor: %w", err)
	}
	defer client.Close()
	defer server.Close()
	st := client.ConnectionState()
	suite := fmt.Sprintf("%s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))

	wbuf := payload(floorChunk)
	rbuf := make([]byte, floorChunk)
	before, err := takeSnapshot(nil)
	if err != nil {
		return floorSample{}, err
	}
	start := before.at
	sent := make(chan error, 1)
	go func() {
		var err error
		for left := size; left > 0 && err == nil; {
			n := min(left, int64(len(wbuf)))
			_, err = client.Write(wbuf[:n])
			left -= n
		}
		sent <- err
	}()
	var got int64
	for got < size {
		n, err := server.Read(rbuf)
		got += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) && got == size {
				break
			}
			return floorSample{}, fmt.Errorf("TLS floor: read after %d bytes: %w", got, err)
		}
	}
	elapsed := time.Since(start)
	if err := <-sent; err != nil {
		return floorSample{}, fmt.Errorf("TLS floor: write: %w", err)
	}
	after, err := takeSnapshot(nil)
	if err != nil {
		return floorSample{}, err
	}
	d := diff(before, after, size)
	return floorSample{
		CPUPerGiB: d.SelfCPU, MiBps: mib(size) / elapsed.Seconds(),
		Reads: d.SelfReads, Writes: d.SelfWr, OtherCores: d.OtherCores, Suite: suite,
	}, nil
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }
func mib(n int64) float64 { return float64(n) / (1 << 20) }
