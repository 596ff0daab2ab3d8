// Command refrelay is the benchmark's reference relay: the simplest
// TLS-terminating port-forward relay there can be, run as a child process
// next to pfgateway so one run shows what this machine allows a relay to
// reach. It is a yardstick, not a product: no authentication (no client
// certificate is asked for), no API server, no authorization, no limits,
// no metrics, no graceful shutdown.
//
// It accepts TLS, reads the request head, rewrites
// /api/v1/namespaces/{ns}/pods/{pod}/portforward to /portForward/{ns}/{pod},
// sends the request unchanged otherwise (SPDY POST or WebSocket tunnel GET)
// to the kubelet over TLS with a client certificate, and then copies bytes
// both ways with io.Copy until either side closes.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve TLS on")
	cert := flag.String("cert", "", "serving certificate (PEM)")
	key := flag.String("key", "", "serving key (PEM)")
	kubelet := flag.String("kubelet", "", "kubelet host:port")
	kcert := flag.String("kubelet-cert", "", "client certificate for the kubelet (PEM)")
	kkey := flag.String("kubelet-key", "", "client key for the kubelet (PEM)")
	ca := flag.String("ca", "", "CA that signed the kubelet's serving certificate (PEM)")
	flag.Parse()
	serving, err := tls.LoadX509KeyPair(*cert, *key)
	must(err)
	client, err := tls.LoadX509KeyPair(*kcert, *kkey)
	must(err)
	caPEM, err := os.ReadFile(*ca)
	must(err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	host, _, _ := net.SplitHostPort(*kubelet)
	up := &tls.Config{Certificates: []tls.Certificate{client}, RootCAs: roots, ServerName: host, NextProtos: []string{"http/1.1"}}
	ln, err := tls.Listen("tcp", *listen, &tls.Config{Certificates: []tls.Certificate{serving}, NextProtos: []string{"http/1.1"}})
	must(err)
	for {
		c, err := ln.Accept()
		must(err)
		go relay(c, *kubelet, up)
	}
}

func relay(c net.Conn, kubelet string, up *tls.Config) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return // includes the benchmark's readiness probe (a bare TCP connect)
	}
	// /api/v1/namespaces/{ns}/pods/{pod}/portforward → /portForward/{ns}/{pod}
	p := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	if len(p) != 7 || p[0] != "api" || p[1] != "v1" || p[2] != "namespaces" || p[4] != "pods" || p[6] != "portforward" {
		io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	req.URL.Path, req.URL.RawPath, req.Host = "/portForward/"+p[3]+"/"+p[5], "", kubelet
	k, err := tls.Dial("tcp", kubelet, up)
	if err != nil {
		log.Print(err)
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	defer k.Close()
	if err := req.Write(k); err != nil {
		log.Print(err)
		return
	}
	// Bytes the client sent after the request head are already in br.
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := k.Write(b); err != nil {
			return
		}
	}
	// Splice until either direction ends, then close both.
	var once sync.Once
	done := make(chan struct{})
	stop := func() { once.Do(func() { close(done) }) }
	go func() { io.Copy(k, c); stop() }()
	go func() { io.Copy(c, k); stop() }()
	<-done
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
