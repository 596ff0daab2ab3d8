package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/session"
)

// Reconnect configures the replacement of a session's lost kubelet
// connection (stream-aware splice only; package relay, Reconnect). The
// opaque splice and the legacy WebSocket protocol cannot replace it: their
// sessions end with it.
type Reconnect struct {
	// Enabled turns reconnection on.
	Enabled bool
	// Attempts, Backoff and MaxBackoff bound the dials per reconnection
	// (relay defaults when zero).
	Attempts            int
	Backoff, MaxBackoff time.Duration
	// LossMessage writes the reason on the ended pairs' error streams,
	// which makes client-go end its session (relay.Reconnect.LossMessage).
	LossMessage bool
	// ResetKubeletErrors keeps the kubelet's failed-forward messages from the
	// client (relay.Reconnect.ResetKubeletErrors); it applies with Enabled
	// false too.
	ResetKubeletErrors bool
}

// Reresolve finds the pod's kubelet again for a new connection: its URL
// and node. An error that is apierrors.IsNotFound means the pod is gone.
type Reresolve func(ctx context.Context) (target *url.URL, node string, err error)

// reconnect returns the relay's reconnection options for session s, whose
// first kubelet connection negotiated protocol version proto.
func (p *Proxy) reconnect(s *session.Session, req *http.Request, re Reresolve, proto string) relay.Reconnect {
	rc := p.Reconnect
	if !rc.Enabled || re == nil {
		return relay.Reconnect{ResetKubeletErrors: rc.ResetKubeletErrors}
	}
	return relay.Reconnect{
		ResetKubeletErrors: rc.ResetKubeletErrors,
		Redial:             p.redialer(s, req, re, proto),
		RedialAttempts:     rc.Attempts,
		RedialBackoff:      rc.Backoff,
		RedialMaxBackoff:   rc.MaxBackoff,
		LossMessage:        rc.LossMessage,
		OnLoss: func(node string, err error) {
			p.Metrics.KubeletLost(s.Cluster)
			klog.InfoS("Lost the kubelet connection; the session goes on", "sessionID", s.ID, "node", node, "err", err)
		},
	}
}

// redialer re-resolves the pod (it may have moved or restarted), dials its
// kubelet and checks the 101, asking for the protocol version the client
// already speaks.
func (p *Proxy) redialer(s *session.Session, req *http.Request, re Reresolve, proto string) func(context.Context) (relay.Conn, error) {
	return func(ctx context.Context) (relay.Conn, error) {
		target, node, err := re(ctx)
		if err != nil {
			if ctx.Err() != nil {
				p.Metrics.Reconnect(s.Cluster, string(metrics.ReasonTimeout))
				return relay.Conn{}, fmt.Errorf("resolving the pod: %w", err)
			}
			if apierrors.IsNotFound(err) {
				p.Metrics.Reconnect(s.Cluster, metrics.ReconnectPodNotFound)
				return relay.Conn{}, relay.Permanent(fmt.Errorf("the pod is gone: %v", err))
			}
			var st apierrors.APIStatus
			p.Metrics.Reconnect(s.Cluster, metrics.ReconnectResolveError)
			if errors.As(err, &st) && st.Status().Code == http.StatusForbidden {
				return relay.Conn{}, relay.Permanent(err)
			}
			return relay.Conn{}, fmt.Errorf("resolving the pod: %w", err)
		}
		breq := backendRequest(req, s.Protocol, target, s.Ports).WithContext(ctx)
		breq.Header.Del(httpstream.HeaderProtocolVersion)
		breq.Header.Set(httpstream.HeaderProtocolVersion, proto)
		up, err := p.backend(s).dial(ctx, breq)
		if err != nil {
			reason := metrics.ReasonDial
			var be *BackendError
			if errors.As(err, &be) {
				reason = be.Reason
			}
			p.Metrics.Reconnect(s.Cluster, string(reason))
			return relay.Conn{}, fmt.Errorf("dialing the kubelet on node %s: %w", node, err)
		}
		switch {
		case up.resp.StatusCode != http.StatusSwitchingProtocols:
			_ = up.conn.Close()
			p.Metrics.Reconnect(s.Cluster, string(metrics.ReasonErrorStatus))
			return relay.Conn{}, fmt.Errorf("the kubelet on node %s answered %s", node, up.resp.Status)
		case !upgradedTo(up.resp, s.Protocol) || up.resp.Header.Get(httpstream.HeaderProtocolVersion) != proto:
			_ = up.conn.Close()
			p.Metrics.Reconnect(s.Cluster, string(metrics.ReasonBadResponse))
			return relay.Conn{}, fmt.Errorf("the kubelet on node %s did not upgrade to %s (%s)", node, s.Protocol, proto)
		}
		p.Metrics.Reconnect(s.Cluster, metrics.ReconnectSuccess)
		s.SetNode(node)
		klog.V(2).InfoS("Reconnected to the kubelet", "sessionID", s.ID, "node", node)
		return kubeletSide(s, up.conn, up.body(), node), nil
	}
}
