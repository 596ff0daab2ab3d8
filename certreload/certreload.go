// Package certreload serves a TLS key pair from files and picks up
// replacements (cert-manager or a Secret update rotating them) without a
// restart. A bad replacement is logged and the current pair kept.
package certreload

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// Reloader holds the current key pair.
type Reloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
	stamp             string // modification times of the loaded files; only Run touches it
}

// New loads the pair once; an error here is a start-up error.
func New(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// Run checks the files every period until ctx ends.
func (r *Reloader) Run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s, err := r.modTimes(); err == nil && s != r.stamp {
				if err := r.load(); err != nil {
					klog.ErrorS(err, "Keeping the current serving certificate", "certFile", r.certFile)
				} else {
					klog.InfoS("Reloaded the serving certificate", "certFile", r.certFile)
				}
			}
		}
	}
}

func (r *Reloader) load() error {
	stamp, err := r.modTimes()
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading %s and %s: %w", r.certFile, r.keyFile, err)
	}
	r.cur.Store(&c)
	r.stamp = stamp
	return nil
}

func (r *Reloader) modTimes() (string, error) {
	var s string
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		s += st.ModTime().String() + fmt.Sprint(st.Size()) + ";"
	}
	return s, nil
}
