// Command gwprof is pfgateway with a CPU profiler the benchmark can switch
// on and off, so a profile covers one transfer and nothing else. The gateway
// itself is unchanged: same command, same flags.
//
// With PFGW_PROFILE_DIR set, SIGUSR1 starts a CPU profile and SIGUSR2 stops
// it and writes $PFGW_PROFILE_DIR/profile-N.pprof (N counts from 1); the
// file appears, complete, by rename.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app"
)

func main() {
	if dir := os.Getenv("PFGW_PROFILE_DIR"); dir != "" {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
		go profileOnSignal(dir, ch)
	}
	if err := app.NewCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func profileOnSignal(dir string, ch <-chan os.Signal) {
	var f *os.File
	seq := 0
	for sig := range ch {
		switch {
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
