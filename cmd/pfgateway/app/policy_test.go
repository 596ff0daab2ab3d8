package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

func TestNewPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const head = "apiVersion: pfgateway.io/v1alpha1\nkind: Policy\nrules:\n"
	anyPort := write("any.yaml", head+"- name: ns\n  users: [alice]\n  namespaces: [web]\n")
	ports := write("ports.yaml", head+"- name: ns\n  users: [alice]\n- name: web-ports\n  users: [alice]\n  ports: [8080]\n")
	forwards := write("forwards.yaml", head+"- name: all\n  users: [\"*\"]\nlimits:\n- name: timed\n  users: [bob]\n  idleTimeout: 1m\n- name: few\n  groups: [g]\n  maxForwardsPerSession: 2\n")
	timed := write("timed.yaml", head+"- name: all\n  users: [\"*\"]\nlimits:\n- name: timed\n  users: [bob]\n  maxSessions: 1\n  idleTimeout: 1m\n")
	bad := write("bad.yaml", head+"- name: x\n  users: [alice]\n  ports: [\"9-1\"]\n")
	tests := []struct {
		name, file, mode, wantErr string
	}{
		{name: "should run without a policy", mode: options.SpliceStreams},
		{name: "should load port rules with the stream-aware splice", file: ports, mode: options.SpliceStreams},
		{name: "should load rules without ports with the opaque splice", file: anyPort, mode: options.SpliceOpaque},
		{name: "should refuse to start with port rules and the opaque splice", file: ports, mode: options.SpliceOpaque,
			wantErr: "--policy-file: " + ports + ": rules web-ports restrict ports, which --splice-mode=opaque cannot enforce (use --splice-mode=streams)"},
		{name: "should load a forwards limit with the stream-aware splice", file: forwards, mode: options.SpliceStreams},
		{name: "should load session and time limits with the opaque splice", file: timed, mode: options.SpliceOpaque},
		{name: "should refuse to start with a forwards limit and the opaque splice", file: forwards, mode: options.SpliceOpaque,
			wantErr: "--policy-file: " + forwards + ": limits few bound forwarded connections, which --splice-mode=opaque cannot enforce (use --splice-mode=streams)"},
		{name: "should refuse to start with a bad file", file: bad, mode: options.SpliceStreams,
			wantErr: `rules[0].ports[0]: Invalid value: "9-1": range 9-1 is reversed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options.NewOptions()
			o.Policy.File, o.Streams.SpliceMode = tt.file, tt.mode
			l, err := newPolicy(o, prometheus.NewRegistry())
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want it to contain %q", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("newPolicy: %v", err)
			case (l == nil) != (tt.file == ""):
				t.Errorf("loader %v for file %q", l, tt.file)
			}
		})
	}
}
