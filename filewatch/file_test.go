package filewatch

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.yaml")
	f := NewFile(path, 8, "x", "the file", "the config")
	reg := prometheus.NewRegistry()
	f.MustRegister(reg)
	current := ""
	apply := func(data []byte) error {
		if string(data) == "bad" {
			return errors.New("bad content")
		}
		current = Hash(data)
		return nil
	}
	steps := []struct {
		name       string
		write      string // "" removes the file
		applied    bool
		err        bool
		ok, failed float64
	}{
		{"missing file", "", false, true, 0, 1},
		{"still missing: counted once", "", false, false, 0, 1},
		{"good", "a: 1", true, false, 1, 1},
		{"unchanged", "a: 1", false, false, 1, 1},
		{"bad", "bad", false, true, 1, 2},
		{"still bad: counted once", "bad", false, false, 1, 2},
		{"too large: apply sees maxSize+1 bytes", "0123456789", true, false, 2, 2},
		{"good again", "a: 2", true, false, 3, 2},
	}
	for _, s := range steps {
		if s.write == "" {
			_ = os.Remove(path)
		} else if err := os.WriteFile(path, []byte(s.write), 0o600); err != nil {
			t.Fatal(err)
		}
		applied, err := f.Reload(current, apply)
		if applied != s.applied || (err != nil) != s.err {
			t.Fatalf("%s: applied %v err %v", s.name, applied, err)
		}
		if got := testutil.ToFloat64(f.Reloads(ResultSuccess)); got != s.ok {
			t.Fatalf("%s: reloads{success} = %v, want %v", s.name, got, s.ok)
		}
		if got := testutil.ToFloat64(f.Reloads(ResultFailure)); got != s.failed {
			t.Fatalf("%s: reloads{failure} = %v, want %v", s.name, got, s.failed)
		}
	}
	if data, _ := f.Read(); string(data) != "a: 2" {
		t.Fatalf("Read = %q", data)
	}
	_ = os.WriteFile(path, []byte("0123456789"), 0o600)
	if data, _ := f.Read(); len(data) != 9 {
		t.Fatalf("Read of a 10-byte file with maxSize 8 gave %d bytes, want 9", len(data))
	}
}
