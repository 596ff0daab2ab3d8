#!/usr/bin/env bash
# Builds a real kube-apiserver for the control-plane test tier
# (test/controlplane) and caches it; prints the binary's path.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the k8s.io
# staging modules with local paths. So a throwaway module requires
# k8s.io/kubernetes at the pinned release and replaces every staging module
# with its matching v0.Y.Z release from the module proxy.
#
# Usage: hack/kube-apiserver.sh [vX.Y.Z]   (default: the pinned release below)
# Env:   PFGATEWAY_CACHE (default ~/.cache/pfgateway)
set -euo pipefail

version="${1:-${KUBE_APISERVER_VERSION:-v1.37.2}}"
cache="${PFGATEWAY_CACHE:-$HOME/.cache/pfgateway}"
bin="$cache/kube-apiserver-$version"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"

# The staging modules are released as v0.Y.Z for Kubernetes v1.Y.Z.
staging="v0.${version#v1.}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

export GOSUMDB=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
go mod init kubeapiserverbuild >/dev/null 2>&1
go mod edit -require="k8s.io/kubernetes@$version"
go mod download -x "k8s.io/kubernetes@$version" >/dev/null 2>&1 || go mod download "k8s.io/kubernetes@$version"
kdir=$(go list -m -f '{{.Dir}}' "k8s.io/kubernetes@$version" 2>/dev/null || true)
if [ -z "$kdir" ]; then
  kdir="$(go env GOMODCACHE)/k8s.io/kubernetes@$version"
fi

# Every `k8s.io/X => ./staging/src/k8s.io/X` line of kubernetes's go.mod.
mods=$(grep -Eo 'k8s\.io/[a-z0-9.-]+ => \./staging/src/k8s\.io/[a-z0-9.-]+' "$kdir/go.mod" | awk '{print $1}' | sort -u)
if [ -z "$mods" ]; then
  echo "no staging replacements found in $kdir/go.mod" >&2
  exit 1
fi
for m in $mods; do
  go mod edit -replace="$m=$m@$staging"
done
cat > main.go <<'GO'
package main

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"

func main() {}
GO
go mod tidy >&2
echo "building kube-apiserver $version (this takes minutes)" >&2
go build -trimpath -ldflags "-s -w \
  -X k8s.io/component-base/version.gitVersion=$version \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$(echo "$version" | cut -d. -f2) \
  -X k8s.io/client-go/pkg/version.gitVersion=$version" \
  -o "$bin.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$bin.tmp" "$bin"
echo "$bin"
