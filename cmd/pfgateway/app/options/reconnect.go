package options

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
)

// ReconnectOptions configure the replacement of a live session's lost
// kubelet connection (--splice-mode=streams only; the opaque splice and
// the legacy WebSocket protocol end the session with it).
type ReconnectOptions struct {
	Enabled     bool
	Attempts    int
	Backoff     time.Duration
	MaxBackoff  time.Duration
	LossMessage bool
	// ForwardError is what a client is told of a forward the kubelet
	// failed: ForwardErrorMessage or ForwardErrorReset.
	ForwardError string
}

// --kubelet-forward-error values.
const (
	ForwardErrorMessage = "message"
	ForwardErrorReset   = "reset"
)

// NewReconnectOptions returns the defaults: on, 5 attempts from 100 ms
// doubling to 5 s, and the streams of a lost forwarded connection reset
// rather than given a message (client-go ends its session on any message).
func NewReconnectOptions() ReconnectOptions {
	return ReconnectOptions{Enabled: true, Attempts: 5, Backoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, ForwardError: ForwardErrorMessage}
}

// AddFlags adds the reconnection flags to fs.
func (o *ReconnectOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "kubelet-reconnect", o.Enabled, "With --splice-mode=streams, keep a client's session when the gateway's kubelet connection dies (kubelet restart or GOAWAY, network cut, ping timeout): the forwarded connections on it end, and the next one re-resolves the pod and dials its kubelet again. false ends the session with the kubelet connection, as the API server does.")
	fs.IntVar(&o.Attempts, "kubelet-reconnect-attempts", o.Attempts, "Dials per reconnection, all within --stream-creation-timeout; the forwarded connection that waits for them fails after the last.")
	fs.DurationVar(&o.Backoff, "kubelet-reconnect-backoff", o.Backoff, "Wait after the first failed reconnection dial; it doubles after each failure up to --kubelet-reconnect-max-backoff.")
	fs.DurationVar(&o.MaxBackoff, "kubelet-reconnect-max-backoff", o.MaxBackoff, "Longest wait between reconnection dials.")
	o.addForwardErrorFlag(fs)
	fs.BoolVar(&o.LossMessage, "kubelet-loss-message", o.LossMessage, "Write why on the error stream of each forwarded connection a lost kubelet connection ends, as the kubelet reports a failed forward. client-go (kubectl 1.23 and later) then ends its whole session, so by default the streams are reset instead: the client closes that local connection and the session goes on; the reason is logged and audited.")
}

// addForwardErrorFlag is separate for readability of AddFlags.
func (o *ReconnectOptions) addForwardErrorFlag(fs *pflag.FlagSet) {
	fs.StringVar(&o.ForwardError, "kubelet-forward-error", o.ForwardError, "With --splice-mode=streams, what a client is told when the kubelet fails a forwarded connection (\"error forwarding port …\", e.g. nothing listens on the port while the pod's server restarts): \"message\" passes the kubelet's text on its error stream, and client-go (kubectl 1.23 and later) ends its whole session, as it does directly; \"reset\" resets that connection's streams instead, so the client closes only that local connection and the session outlives the restart. The text is logged and audited either way.")
}

// Validate checks the bounds.
func (o *ReconnectOptions) Validate() []error {
	var errs []error
	if o.Attempts < 1 {
		errs = append(errs, fmt.Errorf("--kubelet-reconnect-attempts must be at least 1, got %d", o.Attempts))
	}
	if o.Backoff <= 0 {
		errs = append(errs, fmt.Errorf("--kubelet-reconnect-backoff must be positive, got %v", o.Backoff))
	}
	if o.MaxBackoff < o.Backoff {
		errs = append(errs, fmt.Errorf("--kubelet-reconnect-max-backoff (%v) must not be below --kubelet-reconnect-backoff (%v)", o.MaxBackoff, o.Backoff))
	}
	if o.ForwardError != ForwardErrorMessage && o.ForwardError != ForwardErrorReset {
		errs = append(errs, fmt.Errorf("--kubelet-forward-error must be %q or %q, got %q", ForwardErrorMessage, ForwardErrorReset, o.ForwardError))
	}
	return errs
}
