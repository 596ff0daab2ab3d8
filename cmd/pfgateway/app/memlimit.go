package app

import (
	"github.com/KimMachineGun/automemlimit/memlimit"
	"k8s.io/klog/v2"
)

// setMemoryLimit sets the Go runtime's soft memory limit to 90 % of the
// container's (cgroup) memory limit, unless GOMEMLIMIT is set
// (AUTOMEMLIMIT=0.8 changes the share, AUTOMEMLIMIT=off skips it). Without
// it the heap may grow to twice what is live before a collection, and a
// gateway full of idle sessions meets its container limit with half its
// memory garbage: the OOM killer ends every session at once. With it the
// collector works harder near the limit instead, and an idle session costs
// what it holds (BENCHMARKS.md, idle-session memory).
func setMemoryLimit(from memlimit.Provider) {
	limit, err := memlimit.SetGoMemLimitWithOpts(memlimit.WithProvider(from))
	switch {
	case err != nil:
		klog.ErrorS(err, "Could not set the Go memory limit from the container's memory limit")
	case limit > 0:
		klog.InfoS("Go memory limit set from the container's memory limit", "bytes", limit)
	}
}
