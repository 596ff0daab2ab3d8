package streams

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// matrixCase is one scenario, run on every selected path.
type matrixCase struct {
	name string
	opts clusterOpts
	// paths overrides the selected paths (e.g. a §8 case that exists only
	// with early replies); nil runs all of -streams.paths.
	paths []path
	// slow marks a case that takes 30 s or more; -short skips it.
	slow bool
	run  func(t *testing.T, e *env) result
	// want is the exact result on the direct path, and so on every path.
	want string
	// alts are other results the direct path gives because of a race in
	// the kubelet (each case says which); any of want and alts passes, on
	// every path.
	alts []string
}

// runMatrix runs each case on each path in parallel, each (case, path)
// with its own cluster and gateway, and checks every result equals the
// case's golden and every gateway result equals the direct one.
func runMatrix(t *testing.T, cases []matrixCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.slow && testing.Short() {
				t.Skip("takes 30 s or more; skipped under -short")
			}
			t.Parallel()
			paths := c.paths
			if paths == nil {
				paths = selectedPaths()
			}
			var mu sync.Mutex
			got := map[string]string{}
			// The group returns once every parallel path subtest is done.
			t.Run("paths", func(t *testing.T) {
				for _, p := range paths {
					t.Run(p.name, func(t *testing.T) {
						t.Parallel()
						e := newEnv(t, p, c.opts)
						r := c.run(t, e).String()
						mu.Lock()
						got[p.name] = r
						mu.Unlock()
						if c.want != "" && !c.matches(r) {
							t.Errorf("result differs from the golden (-want +got):\n%s", lineDiff(strings.TrimLeft(c.want, "\n"), r))
						}
						if c.want == "" {
							t.Logf("result:\n%s", r)
						}
					})
				}
			})
			direct, ok := got[pathDirect.name]
			if !ok {
				return
			}
			for _, p := range paths {
				// With alternatives, either is fine on any path (checked above).
				if r, ok := got[p.name]; ok && p != pathDirect && r != direct && len(c.alts) == 0 {
					t.Errorf("%s differs from direct (-direct +%s):\n%s", p.name, p.name, lineDiff(direct, r))
				}
			}
		})
	}
}

func (c matrixCase) matches(r string) bool {
	for _, w := range append([]string{c.want}, c.alts...) {
		if r == strings.TrimLeft(w, "\n") {
			return true
		}
	}
	return false
}

// lineDiff is a small LCS line diff; transcripts are tens of lines.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	n, m := len(x), len(y)
	l := make([][]int, n+1)
	for i := range l {
		l[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			fmt.Fprintf(&out, "  %s\n", x[i])
			i, j = i+1, j+1
		case j < m && (i == n || l[i][j+1] >= l[i+1][j]):
			fmt.Fprintf(&out, "+ %s\n", y[j])
			j++
		default:
			fmt.Fprintf(&out, "- %s\n", x[i])
			i++
		}
	}
	return out.String()
}
