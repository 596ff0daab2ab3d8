#!/usr/bin/env bash
# The project's test command (README, CI): static checks, every package under
# the race detector, the allocation checks without it, then the end-to-end
# tier again without it so the client matrix moves its full 64 MiB payloads
# each way, then the control-plane tier
# (etcd and a real kube-apiserver; hack/kube-apiserver.sh builds the binary,
# and the tier skips without it, or fails with CI=true). The chart tests
# (test/chart, and test/controlplane's TestChart*) need hack/helm.sh's helm.
# The end-to-end tier includes the L7 tests (TestNginx*: the gateway behind
# Debian's nginx with docs/nginx.md's config); they skip without nginx, or
# fail with CI=true. `-run TestNginx ./test/e2e/` runs them alone.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race (unit and end-to-end)"
go test -race -count=1 -timeout 30m $(go list ./... | grep -v /test/controlplane)

echo "== go test (allocation checks, which the race detector's own allocations would fail)"
go test -count=1 -run 'Allocs' ./upgrade/...

echo "== go test (end-to-end, full payloads)"
go test -count=1 -timeout 30m ./test/e2e/...

echo "== go test -race (control plane: etcd + kube-apiserver)"
go test -race -count=1 -timeout 15m ./test/controlplane/...
