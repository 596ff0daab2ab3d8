package filewatch

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"
)

// Reload results, the values of the reloads counter's result label.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// File is what the reloaded files share besides the watch: a bounded read,
// skipping content already in force or already refused (a bad file is
// counted and logged once per content, not once per period), and the
// reloads_total and last_reload_timestamp_seconds metrics. The caller
// serialises Reload calls.
type File struct {
	path     string
	maxSize  int64
	reloads  *prometheus.CounterVec
	lastTime *prometheus.GaugeVec
	failed   string // the last refused content's hash (or read error)
}

// NewFile returns the file at path with its metrics, named
// pfgateway_<subsystem>_…; name says which file in their help ("the
// --policy-file") and kept what a failed reload keeps ("the policy").
// They are registered by MustRegister, once the file first loaded.
func NewFile(path string, maxSize int64, subsystem, name, kept string) *File {
	f := &File{
		path:    path,
		maxSize: maxSize,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pfgateway", Subsystem: subsystem, Name: "reloads_total",
			Help: "Reloads of " + name + " after it changed, by result; a failed reload keeps " + kept + " in force.",
		}, []string{"result"}),
		lastTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "pfgateway", Subsystem: subsystem, Name: "last_reload_timestamp_seconds",
			Help: "Unix time of the last reload of " + name + ", by result (success includes the load at start).",
		}, []string{"result"}),
	}
	for _, r := range []string{ResultSuccess, ResultFailure} {
		f.reloads.WithLabelValues(r)
	}
	return f
}

// MustRegister registers the file's metrics on reg.
func (f *File) MustRegister(reg prometheus.Registerer) { reg.MustRegister(f.reloads, f.lastTime) }

// Read reads at most maxSize+1 bytes, so a parser can refuse a larger file
// without it being read whole.
func (f *File) Read() ([]byte, error) {
	file, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return io.ReadAll(io.LimitReader(file, f.maxSize+1))
}

// Loaded records a successful load (the first, at start, or a reload).
func (f *File) Loaded() { f.lastTime.WithLabelValues(ResultSuccess).SetToCurrentTime() }

// Reload reads the file and, when its content differs from current (the
// Hash of what is in force) and was not refused already, calls apply with
// it. It returns whether apply took it, or why the file or apply refused
// it; a refusal is counted once per content.
func (f *File) Reload(current string, apply func([]byte) error) (bool, error) {
	data, err := f.Read()
	key := "error: " + fmt.Sprint(err)
	if err == nil {
		key = Hash(data)
		if key == current {
			f.failed = ""
			return false, nil
		}
	}
	if key == f.failed {
		return false, nil
	}
	if err == nil {
		err = apply(data)
	}
	if err != nil {
		f.failed = key
		f.reloads.WithLabelValues(ResultFailure).Inc()
		f.lastTime.WithLabelValues(ResultFailure).SetToCurrentTime()
		return false, err
	}
	f.failed = ""
	f.reloads.WithLabelValues(ResultSuccess).Inc()
	f.Loaded()
	return true, nil
}

// Hash is a file content's identity: hex SHA-256.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Reloads is the reloads counter of result, for tests and callers that
// report it.
func (f *File) Reloads(result string) prometheus.Counter { return f.reloads.WithLabelValues(result) }
