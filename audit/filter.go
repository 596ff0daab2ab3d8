package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiaudit "k8s.io/apiserver/pkg/audit"

	"github.com/pfgateway/pfgateway/status"
)

// headerAuditID is the response header the apiserver names its audit ID in.
const headerAuditID = "Audit-Id"

// UnavailableMessage is the 503's message while a sink refuses sessions.
const UnavailableMessage = "audit backend unavailable"

// WithRefused is the filter placed right after authentication: for each
// port-forward request it keeps the record the session's events are built
// from, refuses the request with 503 while --audit-overflow=refuse and a
// sink is unavailable, and emits the event of a request answered without
// an upgrade (by the filters and handlers after it: 403, 404, 400, 503…).
// A nil Auditor returns next.
func (a *Auditor) WithRefused(next http.Handler) http.Handler {
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !isPortForward(req) {
			next.ServeHTTP(w, req)
			return
		}
		r := newRecord(req, time.Now())
		ctx := apiaudit.WithAuditContext(req.Context())
		r.ac = apiaudit.AuditContextFrom(ctx)
		apiaudit.WithAuditID(ctx, r.base.AuditID)
		ctx = context.WithValue(ctx, recordKey{}, r)
		req = req.WithContext(ctx)
		w.Header().Set(headerAuditID, string(r.base.AuditID))
		cw := &captureWriter{ResponseWriter: w}
		if a.refuse && a.Unavailable() {
			a.metrics.refused.Inc()
			status.Write(cw, req, apierrors.NewServiceUnavailable(UnavailableMessage))
		} else {
			next.ServeHTTP(cw, req)
		}
		if r.started.Load() {
			return // the session's own events cover it
		}
		r.mu.Lock()
		end := r.ended
		r.mu.Unlock()
		a.emit(refused(r.event(), cw.code(), cw.sentStatus(), end, time.Now()))
	})
}

// WithFailedAuthentication wraps the handler that answers requests the
// authenticator rejected (401), like the apiserver's
// WithFailedAuthenticationAudit: port-forward requests get an event with no
// user. A nil Auditor returns failed.
func (a *Auditor) WithFailedAuthentication(failed http.Handler) http.Handler {
	if a == nil {
		return failed
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !isPortForward(req) {
			failed.ServeHTTP(w, req)
			return
		}
		r := newRecord(req, time.Now())
		w.Header().Set(headerAuditID, string(r.base.AuditID))
		cw := &captureWriter{ResponseWriter: w}
		failed.ServeHTTP(cw, req)
		a.emit(refused(r.event(), cw.code(), cw.sentStatus(), nil, time.Now()))
	})
}

// captureWriter keeps the status code and the start of the body, to put
// the Status the client got in the event. It passes Hijack through for the
// upgrade (http.ResponseController finds it via Unwrap).
type captureWriter struct {
	http.ResponseWriter
	statusCode int
	body       bytes.Buffer
	hijacked   bool
}

func (c *captureWriter) WriteHeader(code int) {
	if c.statusCode == 0 {
		c.statusCode = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.statusCode == 0 {
		c.statusCode = http.StatusOK
	}
	if room := maxCapturedStatus - c.body.Len(); room > 0 {
		c.body.Write(b[:min(room, len(b))])
	}
	return c.ResponseWriter.Write(b)
}

func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *captureWriter) Flush() { _ = http.NewResponseController(c.ResponseWriter).Flush() }

func (c *captureWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(c.ResponseWriter).Hijack()
	if err == nil {
		c.hijacked = true
	}
	return conn, rw, err
}

// code is the status the client got; a hijacked connection that never
// became a session got nothing the server wrote, which reads as 500.
func (c *captureWriter) code() int {
	switch {
	case c.statusCode != 0:
		return c.statusCode
	case c.hijacked:
		return http.StatusInternalServerError
	}
	return http.StatusOK
}

// sentStatus decodes the body as a Status; nil if it is not one.
func (c *captureWriter) sentStatus() *metav1.Status {
	var st metav1.Status
	if json.Unmarshal(c.body.Bytes(), &st) != nil || st.Kind != "Status" {
		return nil
	}
	return &st
}
