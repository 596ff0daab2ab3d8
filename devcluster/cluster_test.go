package devcluster

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport/spdy"
)

// TestStartStreamTimeouts: Options' stream timeouts reach the kubelet. A
// lone error stream gets the creation-timeout text within the short
// timeout (the default is 30 s), and the then idle session is closed
// by the kubelet within the short idle timeout (the default is 4 h).
func TestStartStreamTimeouts(t *testing.T) {
	c, err := Start(Options{Dir: t.TempDir(), StreamCreationTimeout: 200 * time.Millisecond, StreamIdleTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.AddPod(Pod{Name: "p", Ports: map[int32]string{80: "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: "https://" + c.Kubelet.Addr(), TLSClientConfig: rest.TLSClientConfig{
		CertFile: c.Files.KubeletClientCert, KeyFile: c.Files.KubeletClientKey, CAFile: c.Files.CA,
	}}
	rt, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u := &url.URL{Scheme: "https", Host: c.Kubelet.Addr(), Path: "/portForward/default/p"}
	conn, _, err := spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u).Dial("portforward.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", "80")
	h.Set("requestID", "0")
	s, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	text := make(chan string, 1)
	go func() {
		buf := make([]byte, 512)
		n, _ := s.Read(buf)
		text <- string(buf[:n])
	}()
	select {
	case got := <-text:
		if !strings.HasSuffix(got, "request=0) timed out waiting for streams") {
			t.Errorf("error stream: %q, want the creation timeout", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no creation-timeout text after 5s")
	}
	select {
	case <-conn.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("the kubelet kept an idle session 5s with a 1s idle timeout")
	}
}
