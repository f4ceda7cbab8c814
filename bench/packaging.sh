#!/bin/sh
# Issue 4 packaging benchmark: kfbridge's Package+upload to a real versitygw vs sequential GNU
# `tar czf` of the same node trees, and a resubmit with nothing changed, measured in one run.
# Needs versitygw v1.8.0 ($(go env GOPATH)/bin or PATH) and GNU tar. Usage: bench/packaging.sh [N]
set -eu
cd "$(dirname "$0")/.."
N="${1:-3}"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(go version | cut -d' ' -f3), $(tar --version | head -1)"
exec go test -run '^$' -bench '^BenchmarkPackaging$' -benchtime "${N}x" -count 1 ./runs/
