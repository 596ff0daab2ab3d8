#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for FUZZTIME (10m) each,
# JOBS (2) targets at a time with one worker each, and prints one line per
# target: executions, new interesting inputs, result. A crasher lands in
# the package's testdata/fuzz/<Target>/ and is then a regression test of
# the ordinary `go test` run. Usage: hack/fuzz.sh [package-pattern] (./...).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10m}
JOBS=${JOBS:-2}
LOGS=${LOGS:-$(mktemp -d)}
pattern=${1:-./...}

targets=()
for pkg in $(go list "$pattern"); do
  for t in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    targets+=("$pkg $t")
  done
done
echo "${#targets[@]} fuzz targets, ${FUZZTIME} each, ${JOBS} at a time; logs in ${LOGS}"

run() {
  local pkg=$1 t=$2 log
  log="${LOGS}/$(basename "$pkg")_${t}.log"
  # -fuzzminimizetime bounds the shrinking of each new input: the HTTP and
  # WebSocket targets otherwise spend most of a run minimising.
  if go test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s -parallel 1 "$pkg" >"$log" 2>&1; then
    res=ok
  else
    res=FAIL
  fi
  echo "$res $pkg $t: $(grep -o 'elapsed: [^,]*, execs: [0-9]*[^,]*, new interesting: [0-9]*' "$log" | tail -1)"
}
export -f run
export FUZZTIME LOGS
printf '%s\n' "${targets[@]}" | xargs -P "$JOBS" -L 1 bash -c 'run "$0" "$1"' | tee "${LOGS}/summary.txt"
! grep -q '^FAIL' "${LOGS}/summary.txt"
