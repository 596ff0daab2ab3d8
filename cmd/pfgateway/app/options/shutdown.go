package options

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
)

// ShutdownOptions shape the drain on SIGTERM, besides
// --shutdown-grace-period (ServingOptions), which bounds live sessions.
type ShutdownOptions struct {
	// Delay is the least time the listener stays open once the drain began,
	// even when no session is left.
	Delay time.Duration
}

// NewShutdownOptions returns the defaults: no delay, as kube-apiserver's
// --shutdown-delay-duration. An idle gateway then exits at once; set it to
// about the time a Service's endpoints or a load balancer take to drop a
// terminating replica, so connections still sent to it meet a 503 Status
// (or, for read-only calls, an answer) rather than a refused connection.
func NewShutdownOptions() ShutdownOptions { return ShutdownOptions{} }

// AddFlags registers the shutdown flags on fs.
func (o *ShutdownOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.Delay, "shutdown-delay-duration", o.Delay, "On SIGTERM, the least time the listener stays open while /readyz fails, answering new port-forward sessions with 503 and serving read-only calls, even once no session is left; live sessions get --shutdown-grace-period.")
}

// Validate returns every problem, each naming its flag.
func (o *ShutdownOptions) Validate() []error {
	if o.Delay < 0 {
		return []error{fmt.Errorf("--shutdown-delay-duration must not be negative, got %v", o.Delay)}
	}
	return nil
}
