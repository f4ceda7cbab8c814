#!/bin/sh
# Issue 8 live-log benchmarks, each ratio measured against its baseline in the same run:
# one step's sustained rate vs raw loopback TCP (runner/), and line latency, a Python step's
# 1,000,000 lines followed live vs /dev/null, 1,000 viewers and the manifest delay (handlers/).
# Needs python3. Run it on a quiet machine: every figure here is CPU-bound on 2 cores.
# Usage: bench/livelogs.sh [N]   (N steps per throughput run; default 10)
set -eu
cd "$(dirname "$0")/.."
N="${1:-10}"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(go version | cut -d' ' -f3), load $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench 'StepThroughput' -benchtime "${N}x" -count 3 ./runner/
exec go test -run '^$' -bench 'LiveLatency|PythonMillionLines|ThousandViewers' -benchtime 5x ./handlers/
