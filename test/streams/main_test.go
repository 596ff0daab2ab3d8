package streams

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"testing"
	"time"

	"k8s.io/klog/v2"
)

var showLogs = flag.Bool("streams.logs", false, "show the gateway's, kubelet's and client-go's klog output")

// leakTolerance allows for goroutines started lazily and kept by the
// runtime and libraries (timers, klog's flush daemon, HTTP machinery).
const leakTolerance = 10

func TestMain(m *testing.M) {
	flag.Parse()
	if !*showLogs {
		// client-go and the kubelet log every expected error of these cases.
		fs := flag.NewFlagSet("klog", flag.PanicOnError)
		klog.InitFlags(fs)
		_ = fs.Set("logtostderr", "false")
		_ = fs.Set("stderrthreshold", "FATAL")
		klog.SetOutput(io.Discard)
	}
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		code = checkLeaks(before)
	}
	os.Exit(code)
}

// checkLeaks fails the run when, with every cluster, gateway and client
// stopped, goroutines do not come back to the count before the tests.
func checkLeaks(before int) int {
	deadline := time.Now().Add(20 * time.Second)
	n := runtime.NumGoroutine()
	for n > before+leakTolerance && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > before+leakTolerance {
		buf := make([]byte, 1<<20)
		fmt.Fprintf(os.Stderr, "goroutine leak: %d before the tests, %d after\n%s\n", before, n, buf[:runtime.Stack(buf, true)])
		return 1
	}
	return 0
}
