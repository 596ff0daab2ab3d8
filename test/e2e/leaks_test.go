package e2e

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// leakTolerance allows for goroutines the runtime and libraries start lazily
// and keep (timers, the HTTP/2 machinery, klog's flush daemon).
const leakTolerance = 10

func runtimeGoroutines() int { return runtime.NumGoroutine() }

// openFDs counts this process's open file descriptors.
func openFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	return len(ents), err
}

// settle polls until f() <= limit or d passes and returns the last value.
func settle(d time.Duration, limit int, f func() int) int {
	deadline := time.Now().Add(d)
	n := f()
	for n > limit && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = f()
	}
	return n
}

// steady polls f until it returns the same value three times in a row
// (50ms apart), for at most 3s, and returns the last value.
func steady(f func() int) int {
	n, same := f(), 0
	for deadline := time.Now().Add(3 * time.Second); same < 2 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		m := f()
		if m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

// checkPackageLeaks runs after every test: with every dev cluster, gateway,
// client and kubectl stopped, the goroutine count must come back to where it
// was before the first test, within leakTolerance.
func checkPackageLeaks(before int) int {
	n := settle(20*time.Second, before+leakTolerance, runtimeGoroutines)
	if n > before+leakTolerance {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines before the tests, %d after\n%s\n", before, n, buf)
		return 1
	}
	return 0
}

// TestNoLeaks runs a batch of sessions of every protocol and checks that,
// once they are over, the process (gateway, kubelet, pod and clients) is back
// to the goroutines and file descriptors it had before the batch.
func TestNoLeaks(t *testing.T) {
	e := newEnv(t)
	batch := func(rounds int) {
		for range rounds {
			for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
				f := startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "hash")), hashPort)
				if _, err := transferAll(t, 3, f.dial, 256<<10, 256<<10); err != nil {
					t.FailNow()
				}
				f.stop()
				<-f.done
			}
			lc, _, err := e.dialLegacy("hash", hashPort, v4Binary, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = transfer(t, lc, 256<<10, 256<<10)
			_ = lc.Close()
			if err != nil {
				t.FailNow()
			}
		}
		e.waitIdle(t)
	}
	batch(1) // warm up: lazily started goroutines and pools stay
	base := takeBaseline(t)
	const rounds = 10
	batch(rounds)
	base.check(t, fmt.Sprintf("after %d sessions", rounds*3))
}

// leakBaseline is what the process holds once it is steady, before the
// sessions under test: its goroutines and open file descriptors.
type leakBaseline struct{ goroutines, fds int }

func takeBaseline(t *testing.T) leakBaseline {
	t.Helper()
	g := steady(runtimeGoroutines)
	fds, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	return leakBaseline{g, fds}
}

// check waits for the process to come back to b, within leakTolerance
// goroutines and 4 file descriptors, and fails t if it does not; what
// prefixes the log line.
func (b leakBaseline) check(t *testing.T, what string) {
	t.Helper()
	g := settle(20*time.Second, b.goroutines+leakTolerance, runtimeGoroutines)
	fds := settle(20*time.Second, b.fds+4, func() int { n, _ := openFDs(); return n })
	if what != "" {
		what += ": "
	}
	t.Logf("%sgoroutines %d → %d, open fds %d → %d", what, b.goroutines, g, b.fds, fds)
	if g > b.goroutines+leakTolerance {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutine leak: %d before, %d after\n%s", b.goroutines, g, buf[:runtime.Stack(buf, true)])
	}
	if fds > b.fds+4 {
		t.Errorf("file descriptor leak: %d open before, %d after", b.fds, fds)
	}
}
