#!/usr/bin/env bash
# Builds helm and the helm-unittest runner for the chart tests
# (deploy/helm/pfgateway, test/chart) and caches them; prints the directory
# holding both binaries.
#
# Both come from the Go module proxy, pinned. They are built in one
# throwaway module so the helm libraries helm-unittest links are compiled
# once for both (helm-unittest v1.1.2 is built against helm v3.21.3, hence
# that helm). helm-unittest's own go.mod replaces yaml-jsonpath with its
# fork; a dependency's replace directives are ignored, so it is repeated here.
# The helm-unittest binary runs on its own: it renders charts with the helm
# library in-process, no `helm plugin install` needed.
#
# Usage: hack/helm.sh
# Env:   PFGATEWAY_CACHE (default ~/.cache/pfgateway)
set -euo pipefail

helm_version="${HELM_VERSION:-v3.21.3}"
unittest_version="${HELM_UNITTEST_VERSION:-v1.1.2}"
cache="${PFGATEWAY_CACHE:-$HOME/.cache/pfgateway}"
dir="$cache/helm-$helm_version-unittest-$unittest_version"

if [ -x "$dir/helm" ] && [ -x "$dir/helm-unittest" ]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

export GOSUMDB=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
go mod init helmbuild >/dev/null 2>&1
go mod edit -require="helm.sh/helm/v3@$helm_version" \
  -require="github.com/helm-unittest/helm-unittest@$unittest_version" \
  -replace=github.com/vmware-labs/yaml-jsonpath@v0.3.2=github.com/helm-unittest/yaml-jsonpath@v0.4.0
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "github.com/helm-unittest/helm-unittest/cmd/helm-unittest"
	_ "helm.sh/helm/v3/cmd/helm"
)
GO
go mod tidy >&2
echo "building helm $helm_version and helm-unittest $unittest_version (this takes minutes)" >&2
# The Kubernetes version helm renders and lints for (.Capabilities, a
# chart's kubeVersion) is set at link time, as helm's Makefile does: the
# minor of the client-go it links. Left out, it is v1.20.
k8s_minor=$(go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
kver="-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
kver="$kver -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version $kver" \
  -o "$dir/helm.tmp" helm.sh/helm/v3/cmd/helm
go build -trimpath -ldflags "-s -w $kver" \
  -o "$dir/helm-unittest.tmp" github.com/helm-unittest/helm-unittest/cmd/helm-unittest
mv "$dir/helm.tmp" "$dir/helm"
mv "$dir/helm-unittest.tmp" "$dir/helm-unittest"
echo "$dir"
