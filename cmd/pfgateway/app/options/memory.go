package options

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/pfgateway/pfgateway/memreturn"
)

// MemoryOptions say when the gateway gives free heap memory back to the
// OS (package memreturn).
type MemoryOptions struct {
	// ReturnInterval is how often the heap is looked at; 0 turns it off.
	ReturnInterval time.Duration
	// ReturnMinBytes is the least free memory worth a collection (no flag:
	// tests lower it).
	ReturnMinBytes uint64
}

// NewMemoryOptions returns memreturn's defaults.
func NewMemoryOptions() MemoryOptions {
	d := memreturn.NewOptions()
	return MemoryOptions{ReturnInterval: d.Interval, ReturnMinBytes: d.MinBytes}
}

// AddFlags registers the memory flags on fs.
func (o *MemoryOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.ReturnInterval, "memory-return-interval", o.ReturnInterval, "How often the gateway looks at its heap and, if it allocated at most a quarter of its live heap since the last look and holds at least 4 MiB and an eighth of its live heap in garbage and free memory, collects and returns that memory to the OS (idle sessions then cost what they hold, not the GC's headroom too). 0 turns it off.")
}

// Validate returns every problem, each naming its flag.
func (o *MemoryOptions) Validate() []error {
	if o.ReturnInterval < 0 {
		return []error{fmt.Errorf("--memory-return-interval must not be negative, got %v", o.ReturnInterval)}
	}
	return nil
}

// Returner is memreturn's view of the options.
func (o *MemoryOptions) Returner() memreturn.Options {
	return memreturn.Options{Interval: o.ReturnInterval, MinBytes: o.ReturnMinBytes}
}
