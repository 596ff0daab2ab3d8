package controlplane

import (
	"flag"
	"fmt"
	"io"
	"os"
	"testing"

	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/devcluster/controlplane"
)

var showLogs = flag.Bool("cp.logs", false, "show the gateway's klog output and keep the etcd and kube-apiserver logs on stderr at exit")

// cp is the control plane shared by every test of the package; skipReason
// is set instead when it could not be had outside CI.
var (
	cp         *controlPlane
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if !*showLogs {
		fs := flag.NewFlagSet("klog", flag.PanicOnError)
		klog.InitFlags(fs)
		_ = fs.Set("logtostderr", "false")
		_ = fs.Set("stderrthreshold", "FATAL")
		klog.SetOutput(io.Discard)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if testing.Short() {
		skipReason = "control-plane tier skipped in -short mode"
		return m.Run()
	}
	bins, err := findBinaries()
	if err == nil {
		if cp, err = startControlPlane(bins); err != nil {
			// The pieces are there but do not work together: a failure.
			fmt.Fprintf(os.Stderr, "FAIL: starting the control plane: %v\n", err)
			return 1
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			// CI installs etcd and builds the kube-apiserver (.ci/run): a
			// missing piece there is a broken machine, not a skip.
			fmt.Fprintf(os.Stderr, "FAIL: control-plane tier: %v\n", err)
			return 1
		}
		skipReason = fmt.Sprintf("control-plane tier not runnable here: %v", err)
		fmt.Fprintln(os.Stderr, "controlplane: "+skipReason)
		return m.Run()
	}
	code := m.Run()
	if code != 0 || *showLogs {
		cp.dumpLogs(os.Stderr)
	}
	if err := cp.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stopping the control plane: %v\n", err)
		code = 1
	}
	return code
}

// needControlPlane skips the test when the control plane is not running.
func needControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	if cp == nil {
		t.Skip(skipReason)
	}
	return cp
}

// binaries are the executables the tier runs; devcluster/controlplane
// finds them, for the benchmark too.
type binaries = controlplane.Binaries

func findBinaries() (binaries, error) { return controlplane.FindBinaries() }
