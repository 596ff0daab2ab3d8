package audit

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/json"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// readEvents decodes every line of the files as an audit.k8s.io/v1 Event.
func readEvents(t *testing.T, files ...string) []auditv1.Event {
	t.Helper()
	var out []auditv1.Event
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e auditv1.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: line %q: %v", f, sc.Text(), err)
			}
			if e.APIVersion != "audit.k8s.io/v1" || e.Kind != "Event" {
				t.Fatalf("%s: line is %s %s, want audit.k8s.io/v1 Event", f, e.APIVersion, e.Kind)
			}
			out = append(out, e)
		}
	}
	return out
}

func TestLogBackendWritesV1Events(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "audit.log")
	b, err := NewLogBackend(LogOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	in := &auditinternal.Event{AuditID: "a1", Stage: auditinternal.StageResponseComplete, Verb: "create",
		ResponseStatus: &metav1.Status{Code: 404, Message: "not found"}, Annotations: map[string]string{AnnotPort: "80"}}
	if !b.ProcessEvents(in) {
		t.Fatal("write failed")
	}
	b.Shutdown()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log file %v mode %v", err, fi.Mode())
	}
	got := readEvents(t, path)
	if len(got) != 1 || got[0].AuditID != "a1" || got[0].Stage != auditv1.StageResponseComplete || got[0].ResponseStatus.Code != 404 || got[0].Annotations[AnnotPort] != "80" {
		t.Fatalf("events %+v", got)
	}
	if b.ProcessEvents(in) {
		t.Error("a write after Shutdown (file closed) should fail")
	}
}

// TestLogRotation: with --audit-log-maxsize=1 (MB, lumberjack's unit and
// smallest size) the file rotates and no event is lost or split.
func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	b, err := NewLogBackend(LogOptions{Path: path, MaxSize: 1, MaxBackups: 5})
	if err != nil {
		t.Fatal(err)
	}
	reason := strings.Repeat("r", 900)
	const n = 2500 // about 1 KiB each: more than two files' worth
	for i := range n {
		e := &auditinternal.Event{AuditID: k8stypes.UID(strings.Repeat("0", 8) + string(rune('a'+i%26))), Stage: auditinternal.StageResponseComplete,
			Annotations: map[string]string{AnnotCloseReason: reason}}
		if !b.ProcessEvents(e) {
			t.Fatal("write failed")
		}
	}
	b.Shutdown()
	files, err := filepath.Glob(filepath.Join(dir, "audit*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("files %v: want the log rotated at least twice", files)
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over the 1 MB maxsize", f, fi.Size())
		}
	}
	if got := readEvents(t, files...); len(got) != n {
		t.Fatalf("%d events across %d files, want %d", len(got), len(files), n)
	}
}
