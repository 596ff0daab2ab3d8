package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// snapshot is every counter read around a measured transfer.
type snapshot struct {
	at                 time.Time
	self               float64 // this process's CPU-seconds (getrusage)
	selfReads, selfWr  int64   // this process's read/write system calls
	gw                 float64 // the gateway child's CPU-seconds (/proc/PID/stat)
	gwReads, gwWrites  int64
	machineBusy        float64 // CPU-seconds spent by every process on the machine
	withGateway, valid bool
}

func takeSnapshot(gw *gatewayProc) (snapshot, error) {
	s := snapshot{withGateway: gw != nil}
	var errs [5]error
	if gw != nil {
		s.gw, errs[0] = gw.CPU()
		s.gwReads, s.gwWrites, errs[1] = gw.Syscalls()
	}
	s.machineBusy, errs[2] = machineBusy()
	s.selfReads, s.selfWr, errs[3] = procSyscalls("self")
	s.self, errs[4] = selfCPU()
	s.at = time.Now()
	return s, errors.Join(errs[:]...)
}

var nan = math.NaN()

// delta is what happened between two snapshots, per GiB moved.
type delta struct {
	Seconds             float64
	SelfCPU, GatewayCPU float64 // CPU-s/GiB
	SelfReads, SelfWr   float64 // system calls per MiB
	GwReads, GwWrites   float64 // system calls per MiB
	OtherCores          float64 // average cores busy with other processes
}

func diff(a, b snapshot, size int64) delta {
	d := delta{
		Seconds:    b.at.Sub(a.at).Seconds(),
		SelfCPU:    (b.self - a.self) / gib(size),
		SelfReads:  float64(b.selfReads-a.selfReads) / mib(size),
		SelfWr:     float64(b.selfWr-a.selfWr) / mib(size),
		GatewayCPU: math.NaN(), GwReads: math.NaN(), GwWrites: math.NaN(),
	}
	other := (b.machineBusy - a.machineBusy) - (b.self - a.self)
	if a.withGateway {
		d.GatewayCPU = (b.gw - a.gw) / gib(size)
		d.GwReads = float64(b.gwReads-a.gwReads) / mib(size)
		d.GwWrites = float64(b.gwWrites-a.gwWrites) / mib(size)
		other -= b.gw - a.gw
	}
	d.OtherCores = max(0, other/d.Seconds)
	return d
}

// measure runs one transfer and reads the counters around it.
// gw is nil on the direct path.
func measure(gw *gatewayProc, local, dir string, size int64, profile string) (sample, error) {
	runtime.GC() // start every transfer with a clean heap in this process
	// Scrapes stay outside the CPU snapshots: they cost the gateway CPU.
	allocs, err := startAllocProbe(gw)
	if err != nil {
		return sample{}, err
	}
	if gw != nil {
		if err := gw.ProfileStart(); err != nil {
			return sample{}, err
		}
	}
	before, err := takeSnapshot(gw)
	if err != nil {
		return sample{}, err
	}
	elapsed, err := transfer(local, dir, size, false)
	if err != nil {
		return sample{}, err
	}
	after, err := takeSnapshot(gw)
	if err != nil {
		return sample{}, err
	}
	mallocs, allocBytes, err := allocs.finish(size) // before the profile is written
	if err != nil {
		return sample{}, err
	}
	if gw != nil {
		if err := gw.ProfileStop(profile); err != nil {
			return sample{}, err
		}
	}
	d := diff(before, after, size)
	return sample{MiBps: mib(size) / elapsed.Seconds(), GatewayCPU: d.GatewayCPU, BenchCPU: d.SelfCPU,
		GwReads: d.GwReads, GwWrites: d.GwWrites, OtherCores: d.OtherCores, GwMallocs: mallocs, GwAllocBytes: allocBytes}, nil
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() (float64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime), nil
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// machineBusy is the non-idle CPU time of the whole machine, from the
// first line of /proc/stat, in seconds.
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat format")
	}
	var busy int64
	// user nice system idle iowait irq softirq steal: all but idle and iowait.
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		busy += n
	}
	return float64(busy) / float64(clockTicks()), nil
}

// quietGate waits before each measurement until other processes leave the
// machine nearly idle, so shared machines give comparable figures.
type quietGate struct {
	Below   float64       // cores other processes may use; 0 disables the gate
	MaxWait time.Duration // then measure anyway, and count it
	Missed  int           // measurements that started on a busy machine
}

// wait samples the machine's other load in 500 ms windows until it is
// below g.Below or g.MaxWait has passed.
func (g *quietGate) wait(what string) error {
	if g.Below <= 0 {
		return nil
	}
	deadline := time.Now().Add(g.MaxWait)
	logged := false
	for {
		a, err := takeSnapshot(nil)
		if err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
		b, err := takeSnapshot(nil)
		if err != nil {
			return err
		}
		other := diff(a, b, 1).OtherCores
		switch {
		case other < g.Below:
			return nil
		case time.Now().After(deadline):
			g.Missed++
			logf("machine still busy (other processes %.2f cores) after %s; measuring %s anyway", other, g.MaxWait, what)
			return nil
		case !logged:
			logf("waiting for other processes (%.2f cores) to go below %.2f cores before %s", other, g.Below, what)
			logged = true
		}
	}
}

// pinThreads binds every thread of process pid ("self" for this one) to
// cpu. Threads created later inherit the mask of the thread creating them,
// so pinning all current threads pins the process.
func pinThreads(pid string, cpu int) error {
	var mask [16]uint64 // 1024 CPUs, the kernel's cpu_set_t
	mask[cpu/64] = 1 << (cpu % 64)
	for range 2 { // again, for threads started meanwhile
		tasks, err := os.ReadDir("/proc/" + pid + "/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), uintptr(len(mask)*8), uintptr(unsafe.Pointer(&mask[0])))
			if errno != 0 && errno != syscall.ESRCH {
				return fmt.Errorf("sched_setaffinity(%d, CPU %d): %w", tid, cpu, errno)
			}
		}
	}
	return nil
}
