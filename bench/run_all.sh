#!/usr/bin/env bash
# Run every benchmark (each against its own throwaway database and queue, the
# real PostgreSQL and RabbitMQ), then print one summary table and the machine.
#
#   bench/run_all.sh [results.jsonl]
#
# Each benchmark is bounded (timeout below); a failed one is reported and the
# others still run; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
export BENCH_RESULTS="${1:-$(mktemp --suffix=.jsonl)}"
: >"$BENCH_RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# name[:timeout in seconds, default 300]
BENCHMARKS=(
    month_throughput
    claim_latency
    claim_concurrency
    isbndb_calls
    quota_bound
    stats_endpoint
    schedule_300
    catalog_quality:1500
    generate_once:1500
)
failed=()
for entry in "${BENCHMARKS[@]}"; do
    name=${entry%%:*}
    limit=300
    [[ $entry == *:* ]] && limit=${entry##*:}
    echo "=== bench.$name" >&2
    started=$SECONDS
    if ! timeout "$limit" python -m "bench.$name"; then
        failed+=("$name")
    fi
    echo "=== bench.$name: $((SECONDS - started))s" >&2
done

echo
echo "## Summary ($(date -u +%Y-%m-%dT%H:%MZ), results in $BENCH_RESULTS)"
python -m bench.summary "$BENCH_RESULTS"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
