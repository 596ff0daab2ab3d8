// Package filewatch re-reads a configuration file when it changes, for the
// files the gateway reloads without a restart (the policy, the clusters).
package filewatch

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// Run calls reload once, then whenever the file's directory changes
// (debounced: a save or a ConfigMap update is several events) and every
// period besides, in case an event is lost, until ctx ends. It watches the
// directory because a ConfigMap update swaps a symlink there, which a
// watch on the file itself would miss. what names the file in logs.
func Run(ctx context.Context, path, what string, period, debounce time.Duration, reload func()) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(path)); err != nil {
			_ = w.Close()
		}
	}
	if err != nil {
		klog.ErrorS(err, "Cannot watch the directory of a file; checking it periodically only", "file", what, "path", path, "period", period)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	// An edit made before the watch began would otherwise wait a period.
	reload()
	tick := time.NewTicker(period)
	defer tick.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			reload()
		case <-settle.C:
			reload()
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			settle.Reset(debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			klog.ErrorS(err, "Watching a file", "file", what, "path", path)
		}
	}
}
