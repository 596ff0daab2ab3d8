package options

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
)

// LivenessOptions configure the pings that find a dead kubelet or client
// in seconds rather than at the next write, which for a peer that vanished
// without a FIN or RST TCP reports only after many minutes.
type LivenessOptions struct {
	KubeletPingInterval   time.Duration
	KubeletPingTimeout    time.Duration
	WebSocketPingInterval time.Duration
	WebSocketPingTimeout  time.Duration
}

// NewLivenessOptions returns the defaults. Kubelet pings are off by
// default: a pod that stops reading stalls the kubelet's whole SPDY
// connection (spdystream has no flow control), ping echoes included, so any
// timeout would also end healthy sessions to a slow pod, which the direct
// path does not. Enable them (e.g. 30s/15s) where dead nodes matter more.
// WebSocket pings are on: client-go's tunnel client keeps sending its own
// SPDY pings even when its reader stalls, so only a dead client goes quiet.
// A 30s interval costs 10,000 idle sessions about 330 pings a second.
func NewLivenessOptions() LivenessOptions {
	return LivenessOptions{
		KubeletPingInterval:   0,
		KubeletPingTimeout:    15 * time.Second,
		WebSocketPingInterval: 30 * time.Second,
		WebSocketPingTimeout:  15 * time.Second,
	}
}

// AddFlags registers the liveness flags on fs.
func (o *LivenessOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.KubeletPingInterval, "kubelet-ping-interval", o.KubeletPingInterval, "With --splice-mode=streams, how often the gateway sends a SPDY ping to the kubelet of a session that sent it none for that long (pings relayed for a pinging client count). 0 disables the gateway's own pings and the timeout.")
	fs.DurationVar(&o.KubeletPingTimeout, "kubelet-ping-timeout", o.KubeletPingTimeout, "How long the kubelet may take to echo a ping before the session ends as if its connection was lost. A pod that stops reading while the client sends also stalls the echo.")
	fs.DurationVar(&o.WebSocketPingInterval, "websocket-ping-interval", o.WebSocketPingInterval, "How often the gateway sends a WebSocket ping to a SPDY-over-WebSocket tunnel client. 0 disables the pings and the timeout.")
	fs.DurationVar(&o.WebSocketPingTimeout, "websocket-ping-timeout", o.WebSocketPingTimeout, "A tunnel client that sends nothing, not even a pong, for --websocket-ping-interval plus this long is disconnected.")
}

// Validate checks the durations: intervals may be 0 (off), timeouts of an
// enabled ping must be positive.
func (o *LivenessOptions) Validate() []error {
	var errs []error
	check := func(intervalFlag string, interval time.Duration, timeoutFlag string, timeout time.Duration) {
		if interval < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %v", intervalFlag, interval))
		}
		if interval > 0 && timeout <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive when %s is set, got %v", timeoutFlag, intervalFlag, timeout))
		}
	}
	check("--kubelet-ping-interval", o.KubeletPingInterval, "--kubelet-ping-timeout", o.KubeletPingTimeout)
	check("--websocket-ping-interval", o.WebSocketPingInterval, "--websocket-ping-timeout", o.WebSocketPingTimeout)
	return errs
}
