package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/moby/spdystream"

	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/faultproxy"
)

// Backend faults (kubelet-restart, backend-cut) are not drawn per
// connection: one hits every gateway's kubelet connections at once, so
// they are events, one every -backend-fault-interval on average, and a
// connection is their victim only when it failed exactly the way the
// fault makes it fail and within -fault-window of one.
//
// Expected effects:
//   - stream-aware splice (--kubelet-reconnect, the default): the forwarded
//     connections in flight on the lost kubelet connection are reset (both
//     streams; no error-stream text, --kubelet-loss-message being off), the
//     session survives and its later connections succeed byte-exact.
//     Victim class: "<fault>-reset".
//   - opaque splice: the whole session ends (client-go's
//     ErrLostConnectionToPod: the connection's CloseChan fires); every
//     connection in flight on it fails. Victim class: "<fault>-lost-session".
//     A session that could not be opened while the kubelet was down is
//     "<fault>-open-refused".

// backendEvent is one injected backend fault.
type backendEvent struct {
	f          fault
	begin, end time.Time // injection began, and returned
	severed    int       // backend-cut: TCP connections cut (both ends)
}

// backendFaults injects the backend faults and remembers when.
type backendFaults struct {
	faults   []fault
	interval time.Duration
	window   time.Duration
	grace    time.Duration
	restart  func() error // restarts the test kubelet on the same address
	proxy    *faultproxy.Proxy

	mu     sync.Mutex
	events []backendEvent
	errs   []error
	stop   chan struct{}
	done   chan struct{}
	// The largest distance from a fault's end to a victim's start and end,
	// over all victims: how tight -fault-window really had to be.
	maxStartAfter, maxEndAfter time.Duration
}

// start injects a fault every interval on average (uniform in [½, 1½]×).
func (b *backendFaults) start(seed uint64) {
	b.stop, b.done = make(chan struct{}), make(chan struct{})
	rng := rand.New(rand.NewPCG(seed, 0xfa017))
	go func() {
		defer close(b.done)
		for {
			wait := time.Duration((0.5 + rng.Float64()) * float64(b.interval))
			select {
			case <-b.stop:
				return
			case <-time.After(wait):
			}
			b.inject(b.faults[rng.IntN(len(b.faults))])
		}
	}()
}

// halt stops injecting and waits for the injector (so that cleanup never
// closes the kubelet while it restarts).
func (b *backendFaults) halt() {
	if b != nil && b.stop != nil {
		close(b.stop)
		<-b.done
		b.stop = nil
	}
}

func (b *backendFaults) inject(f fault) {
	// Recorded before it begins: connections fail while it lasts (a
	// kubelet restart waits for its handlers to unwind).
	b.mu.Lock()
	i := len(b.events)
	b.events = append(b.events, backendEvent{f: f, begin: time.Now()})
	b.mu.Unlock()
	var err error
	severed := 0
	switch f {
	case faultKubeletRestart:
		err = b.restart()
	case faultBackendCut:
		severed = b.proxy.Sever()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events[i].end, b.events[i].severed = time.Now(), severed
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %w", f, err))
	}
}

// startBy is the latest start of a victim of ev: the gateway notices a
// lost kubelet connection when it next reads from it, so a connection
// begun a little after the fault may still go to the dead one. Callers
// hold b.mu.
func (b *backendFaults) startBy(ev backendEvent) time.Time {
	if ev.end.IsZero() {
		return time.Now().Add(b.grace)
	}
	return ev.end.Add(b.grace)
}

// until is the end of ev's window; a fault still being injected has none
// yet. Callers hold b.mu.
func (b *backendFaults) until(ev backendEvent) time.Time {
	if ev.end.IsZero() {
		return time.Now().Add(b.window)
	}
	return ev.end.Add(b.window)
}

// near returns the fault whose window [begin, end+window] holds t.
func (b *backendFaults) near(t time.Time) (backendEvent, bool) {
	if b == nil {
		return backendEvent{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.events) - 1; i >= 0; i-- {
		ev := b.events[i]
		if !t.Before(ev.begin) && !t.After(b.until(ev)) {
			return ev, true
		}
	}
	return backendEvent{}, false
}

// victim says whether a connection that ran from start to end and failed
// the way a backend fault makes it fail was in flight when one hit: it
// ended within the fault's window and began at most -fault-grace after
// the fault's injection ended.
func (b *backendFaults) victim(start, end time.Time) (fault, bool) {
	ev, ok := b.near(end)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !ok || start.After(b.startBy(ev)) {
		return faultNone, false
	}
	if !ev.end.IsZero() {
		b.maxStartAfter = max(b.maxStartAfter, start.Sub(ev.end))
		b.maxEndAfter = max(b.maxEndAfter, end.Sub(ev.end))
	}
	return ev.f, true
}

// ok says whether every fault could be injected.
func (b *backendFaults) ok() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.errs) == 0
}

// summary is the report's view: faults injected per kind, errors.
func (b *backendFaults) summary() (counts map[fault]int, severed int, errs []error, startAfter, endAfter time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	counts = map[fault]int{}
	for _, ev := range b.events {
		counts[ev.f]++
		severed += ev.severed
	}
	return counts, severed, b.errs, b.maxStartAfter, b.maxEndAfter
}

// errCut marks a failure that a reset of both streams explains: the
// stream-aware gateway's answer to a lost kubelet connection.
var errCut = errors.New("reset")

// cut wraps err with errCut when it is what a reset stream gives
// client-go's spdystream: a stream reset before its reply (ErrReset), a
// read that ends early (EOF: a reset closes the stream's read side), a
// FIN on a stream already reset (ErrWriteClosedStream).
func cut(err error) error {
	if err == nil {
		return nil
	}
	for _, e := range []error{spdystream.ErrReset, io.EOF, io.ErrUnexpectedEOF, spdystream.ErrWriteClosedStream} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", errCut, err)
		}
	}
	return err
}

// quiet keeps err a reset only if the error stream also ended without a
// word (a reset says nothing; a message would be a different failure),
// waiting for it no longer than the fault window. Without backend faults
// it returns err as it is.
func (s *session) quiet(msg <-chan string, err error, bf *backendFaults) error {
	if bf == nil || !errors.Is(err, errCut) {
		return err
	}
	if m := waitMessage(msg, bf.window); m != "" {
		err := fmt.Errorf("%v; the error stream says %q", err, m)
		if s.gw.reconnects && isShutdownText(m) {
			return fmt.Errorf("%w: %w", errKubeletText, err)
		}
		return err
	}
	return err
}

// errKubeletText marks a connection that the kubelet itself refused or
// cancelled while it shut down for a restart, with its own text, which a
// stream-aware gateway passes on (--kubelet-forward-error=message, the
// default): the test kubelet refuses new forwards ("kubelet is shutting
// down") and cancels their dials to the pod while it closes
// (devcluster/kubelet/forwarder.go).
var errKubeletText = errors.New("the kubelet's shutdown text")

// podAddrs maps the soak pod's ports to the addresses the kubelet dials,
// for the exact texts of a cancelled dial.
var podAddrs = map[int]string{}

// isShutdownText says whether m is exactly one of the test kubelet's
// shutdown texts for one of the soak pod's ports.
func isShutdownText(m string) bool {
	prefix := func(port int) string {
		return fmt.Sprintf("error forwarding port %d to pod %s_default, uid %s: ", port, podName, podUID)
	}
	// A forward that arrives while the kubelet closes is refused for any
	// port, closedPort included.
	if m == prefix(closedPort)+"kubelet is shutting down" {
		return true
	}
	for port, addr := range podAddrs {
		if m == prefix(port)+"kubelet is shutting down" ||
			m == prefix(port)+fmt.Sprintf("failed to connect to localhost:%d inside namespace %q: dial tcp %s: operation was canceled", port, podUID, addr) {
			return true
		}
	}
	return false
}

// victim is the class of a failed connection that a backend fault
// explains, "" when none does. On a stream-aware gateway only a reset
// (errCut, an empty error stream) of a connection in flight at the fault
// is explained, and the session must live on; on an opaque one any
// failure of a connection whose session the gateway ended within the
// fault's window, the connection ending within a window of that.
func (s *session) victim(err error, start, end time.Time, bf *backendFaults) string {
	if bf == nil {
		return ""
	}
	if s.gw.reconnects {
		if s.isLost() {
			return ""
		}
		if errors.Is(err, errKubeletText) {
			if f, ok := bf.victim(start, end); ok && f == faultKubeletRestart {
				return f.String() + "-kubelet-text"
			}
			return ""
		}
		if !errors.Is(err, errCut) {
			return ""
		}
		if f, ok := bf.victim(start, end); ok {
			return f.String() + "-reset"
		}
		return ""
	}
	lostAt, ok := s.waitLost(bf.window)
	if !ok || end.After(lostAt.Add(bf.window)) {
		return ""
	}
	if f, ok := bf.victim(start, lostAt); ok {
		return f.String() + "-lost-session"
	}
	return ""
}

// startBackendFaults puts the cut proxy in front of the kubelet (the
// node's kubelet port points at it, before any gateway starts) and
// prepares the injector; it starts injecting with start.
func startBackendFaults(c *config, cl *devcluster.Cluster, faults []fault) (*backendFaults, error) {
	b := &backendFaults{faults: faults, interval: c.backendInterval, window: c.faultWindow, grace: c.faultGrace, restart: cl.Kubelet.Restart}
	if !slices.Contains(faults, faultBackendCut) {
		return b, nil
	}
	p, err := faultproxy.Start(cl.Kubelet.Addr())
	if err != nil {
		return nil, err
	}
	if err := cl.SetKubeletPort(p.Port()); err != nil {
		_ = p.Close()
		return nil, err
	}
	b.proxy = p
	return b, nil
}

// close stops injecting and the proxy.
func (b *backendFaults) close() {
	b.halt()
	if b.proxy != nil {
		_ = b.proxy.Close()
	}
}

// describe places t relative to the last backend fault that began before
// it, for unexpected errors: "1.2 s after kubelet-restart #7 ended".
func (b *backendFaults) describe(t time.Time) string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.events) - 1; i >= 0; i-- {
		if ev := b.events[i]; !t.Before(ev.begin) {
			if ev.end.IsZero() {
				return fmt.Sprintf(" (%s into %s #%d)", t.Sub(ev.begin).Round(time.Millisecond), ev.f, i+1)
			}
			return fmt.Sprintf(" (%s after %s #%d ended, which took %s)", t.Sub(ev.end).Round(time.Millisecond), ev.f, i+1, ev.end.Sub(ev.begin).Round(time.Millisecond))
		}
	}
	return " (before any backend fault)"
}
