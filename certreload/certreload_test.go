package certreload

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

func TestReload(t *testing.T) {
	ca, err := pki.NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first, _ := ca.Issue(pki.Loopback("first"))
	certFile, keyFile, err := first.WriteFiles(dir, "serving")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		c, _ := r.GetCertificate(nil)
		return c.Leaf.Subject.CommonName
	}
	if cn() != "first" {
		t.Fatalf("serving %q", cn())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, 10*time.Millisecond)

	// A broken replacement keeps the current pair.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if cn() != "first" {
		t.Fatalf("a bad file replaced the certificate: %q", cn())
	}
	// A good one is picked up.
	second, _ := ca.Issue(pki.Loopback("second"))
	if _, _, err := second.WriteFiles(dir, "serving"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cn() != "second" {
		if time.Now().After(deadline) {
			t.Fatalf("still serving %q", cn())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := New(filepath.Join(dir, "nope"), keyFile); err == nil {
		t.Fatal("missing file accepted")
	}
}
