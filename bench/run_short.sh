#!/usr/bin/env bash
# Short mode of every benchmark (CI smoke run): synthetic data, small sizes, few iterations.
# Figures are printed, never asserted: the exit status is non-zero only if a benchmark crashed
# (or overran its time box). Whole run: ~30 s to 1 minute; hard cap 6 x 55 s (one per benchmark).
# Env: PYTHON (default python), SEKMET_BIN (sekmet-fhir for fhir_fallback; without it that
# benchmark prints SKIPPED, or fails when BACKPAIN_CDS_REQUIRE_SERVERS=1).
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
py=${PYTHON:-python}
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
status=0
for bench in hook_latency http_throughput metrics_overhead fhir_fallback warm_start slow_clients smart_view; do
  echo "=== bench/$bench.py --short"
  start=$(date +%s)
  timeout --kill-after=5 55 "$py" "bench/$bench.py" --short
  rc=$?
  echo "=== bench/$bench.py: exit $rc after $(( $(date +%s) - start )) s"
  if [ "$rc" -ne 0 ]; then
    echo "!!! bench/$bench.py failed (exit $rc; 124 = timed out)" >&2
    status=1
  fi
done
exit $status
