package main

import (
	"strconv"

	"github.com/pfgateway/pfgateway/bench/internal/gwproc"
	"github.com/pfgateway/pfgateway/devcluster"
)

// The child-process handling lives in bench/internal/gwproc, shared with
// the soak command (bench/soak).
const (
	gatewayPkg = gwproc.GatewayPkg
	relayPkg   = gwproc.RelayPkg
)

// gatewayProc is the gateway (or the reference relay) as a child process.
type gatewayProc struct {
	*gwproc.Proc
	scrapeCost allocCounters // what one /metrics scrape allocates in the child
}

func buildGateway(dir string, profiling bool) (string, error) {
	return gwproc.BuildGateway(dir, profiling)
}

func goBuild(dir, pkg, name string) (string, error) { return gwproc.GoBuild(dir, pkg, name) }

// startGateway runs bin against the dev cluster's files, with extra flags
// (a -splice variant's), and waits for /readyz.
// With profileDir set, bin must be the profiling wrapper.
// With pin, it runs on CPU 1 with GOMAXPROCS 1.
func startGateway(name, bin, dir, profileDir string, pin bool, f devcluster.Files, extra []string) (*gatewayProc, error) {
	p, err := gwproc.StartGateway(gwproc.Options{Name: name, Bin: bin, Dir: dir, ProfileDir: profileDir, Files: f, Extra: extra, Pin: pinChild(pin)})
	if err != nil {
		return nil, err
	}
	return &gatewayProc{Proc: p}, nil
}

// startRelay runs the reference relay in front of the kubelet (see
// gwproc.StartRelay). With pin, it runs like a pinned gateway.
func startRelay(name, bin, dir string, pin bool, f devcluster.Files, kubelet string) (*gatewayProc, error) {
	p, err := gwproc.StartRelay(name, bin, dir, pinChild(pin), f, kubelet)
	if err != nil {
		return nil, err
	}
	return &gatewayProc{Proc: p}, nil
}

// pinChild pins a child's threads to CPU 1 (nil without pin).
func pinChild(pin bool) func(int) error {
	if !pin {
		return nil
	}
	return func(pid int) error { return pinThreads(strconv.Itoa(pid), 1) }
}

func procSyscalls(pid string) (reads, writes int64, err error) { return gwproc.ProcSyscalls(pid) }

func clockTicks() int64 { return gwproc.ClockTicks() }
