package main

import (
	"fmt"
	"strconv"
	"strings"
)

// fault is what one forwarded connection does besides a clean exchange.
// Every fault has a known effect that the connection checks exactly; any
// other outcome is unexpected.
type fault int

const (
	faultNone fault = iota
	// faultClientReset: the client writes part of its payload, then resets
	// both streams (RST_STREAM CANCEL, as client-go's Reset). Expected: the
	// session carries on (the next connections on it succeed).
	faultClientReset
	// faultPodClose: the pod reads the whole payload but echoes only a
	// prefix of it, then closes. Expected: exactly that prefix, then EOF,
	// and an empty error stream.
	faultPodClose
	// faultNotListening: a port of the pod where nothing listens. Expected:
	// the kubelet's exact message on the error stream, no data.
	faultNotListening
	// faultForbidden: a port the gateway policy forbids (only with a
	// stream-aware gateway). Expected: the policy's exact message.
	faultForbidden
	// faultSessionClose: the client closes the whole session while this
	// connection (and the session's others) are in flight. Expected: every
	// in-flight connection of that session fails; the next session works.
	faultSessionClose
	// faultKubeletRestart restarts the test kubelet on its address
	// (kubelet.Restart: every connection cut, like a crash), and
	// faultBackendCut severs every TCP connection through the proxy
	// between the gateways and the kubelet. Both are backend faults:
	// events that hit every session at once, not drawn per connection
	// (backend.go says what each splice must do).
	faultKubeletRestart
	faultBackendCut
	numFaults
)

var faultNames = [numFaults]string{"none", "client-reset", "pod-close", "not-listening", "forbidden", "session-close", "kubelet-restart", "backend-cut"}

// backend says whether f is injected as an event on the kubelet side
// rather than drawn per connection.
func (f fault) backend() bool { return f == faultKubeletRestart || f == faultBackendCut }

func (f fault) String() string {
	if f >= 0 && f < numFaults {
		return faultNames[f]
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

func parseFault(s string) (fault, error) {
	for i, n := range faultNames {
		if n == s {
			return fault(i), nil
		}
	}
	return 0, fmt.Errorf("unknown fault %q (known: %s)", s, strings.Join(faultNames[1:], ", "))
}

// faultFlag is -faults: a comma-separated list of faults to inject, each
// with equal share of -fault-rate.
type faultFlag struct{ set *[]fault }

func (f faultFlag) String() string {
	if f.set == nil {
		return ""
	}
	var s []string
	for _, x := range *f.set {
		s = append(s, x.String())
	}
	return strings.Join(s, ",")
}

func (f faultFlag) Set(v string) error {
	*f.set = nil
	if v == "" {
		return nil
	}
	for _, name := range strings.Split(v, ",") {
		x, err := parseFault(strings.TrimSpace(name))
		if err != nil {
			return err
		}
		if x == faultNone {
			continue
		}
		*f.set = append(*f.set, x)
	}
	return nil
}
