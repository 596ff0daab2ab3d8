// Command gwprof is pfgateway with a CPU profiler the benchmark can switch
// on and off, so a profile covers one transfer and nothing else. The gateway
// itself is unchanged: same command, same flags.
//
// With PFGW_PROFILE_DIR set, SIGUSR1 starts a CPU profile and SIGUSR2 stops
// it and writes $PFGW_PROFILE_DIR/profile-N.pprof (N counts from 1); the
// file appears, complete, by rename. SIGHUP writes heap-N.pprof (in-use
// memory after a GC) and goroutines-N.txt, for the idle-session figures,
// then returns the free heap to the OS.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"syscall"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app"
)

func main() {
	if v := os.Getenv("PFGW_MEMPROFILERATE"); v != "" {
		// 1 records every allocation: exact per-session figures from a
		// heap profile, at a cost the idle-session runs can afford.
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			runtime.MemProfileRate = n
		}
	}
	if dir := os.Getenv("PFGW_PROFILE_DIR"); dir != "" {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP)
		go profileOnSignal(dir, ch)
	}
	if err := app.NewCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func profileOnSignal(dir string, ch <-chan os.Signal) {
	var f *os.File
	seq, heapSeq := 0, 0
	for sig := range ch {
		switch {
		case sig == syscall.SIGHUP:
			heapSeq++
			writeProfiles(dir, heapSeq)
		case sig == syscall.SIGUSR1 && f == nil:
			var err error
			if f, err = os.Create(filepath.Join(dir, "profile.tmp")); err != nil {
				fmt.Fprintln(os.Stderr, "gwprof:", err)
				continue
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, "gwprof:", err)
				f.Close()
				f = nil
			}
		case sig == syscall.SIGUSR2 && f != nil:
			pprof.StopCPUProfile()
			f.Close()
			f = nil
			seq++
			if err := os.Rename(filepath.Join(dir, "profile.tmp"), filepath.Join(dir, fmt.Sprintf("profile-%d.pprof", seq))); err != nil {
				fmt.Fprintln(os.Stderr, "gwprof:", err)
			}
		}
	}
}

// writeProfiles writes the heap (after a GC, so in-use is what is live) and
// the goroutines with their stacks.
func writeProfiles(dir string, seq int) {
	runtime.GC()
	for name, debug := range map[string]int{"heap": 0, "goroutine": 1} {
		tmp := filepath.Join(dir, name+".tmp")
		f, err := os.Create(tmp)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gwprof:", err)
			continue
		}
		ext := map[int]string{0: "pprof", 1: "txt"}[debug]
		err = pprof.Lookup(name).WriteTo(f, debug)
		f.Close()
		if err == nil {
			err = os.Rename(tmp, filepath.Join(dir, fmt.Sprintf("%s-%d.%s", name, seq, ext)))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "gwprof:", err)
		}
	}
	// Then return the free heap to the OS: the RSS read next is what the
	// live state costs, the floor a gateway under a memory limit
	// (GOMEMLIMIT) converges to, without the GC's headroom.
	debug.FreeOSMemory()
}
