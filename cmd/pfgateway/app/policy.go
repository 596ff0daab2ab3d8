package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/policy"
)

// policyCheckPeriod is how often the policy file is re-read besides the
// file-system watch, in case an event is missed.
const policyCheckPeriod = 30 * time.Second

// newPolicy loads --policy-file; nil without one. A bad file, or port rules
// with the opaque splice (which cannot see ports), is a start-up error; on
// reload either keeps the policy in force.
func newPolicy(o *options.Options, reg prometheus.Registerer) (*policy.Loader, error) {
	if o.Policy.File == "" {
		return nil, nil
	}
	check := func(p *policy.Policy) error {
		if names := p.PortRules(); len(names) > 0 && o.Streams.SpliceMode == options.SpliceOpaque {
			return fmt.Errorf("rules %s restrict ports, which --splice-mode=%s cannot enforce (use --splice-mode=%s)",
				strings.Join(names, ", "), options.SpliceOpaque, options.SpliceStreams)
		}
		if names := p.ForwardLimits(); len(names) > 0 && o.Streams.SpliceMode == options.SpliceOpaque {
			return fmt.Errorf("limits %s bound forwarded connections, which --splice-mode=%s cannot enforce (use --splice-mode=%s)",
				strings.Join(names, ", "), options.SpliceOpaque, options.SpliceStreams)
		}
		return nil
	}
	l, err := policy.NewLoader(o.Policy.File, check, reg)
	if err != nil {
		return nil, fmt.Errorf("--policy-file: %w", err)
	}
	return l, nil
}
