"""Benchmark 6: ``GET /api/internal/backfill-stats`` p50/p99 at the largest table vs a
trivial JSON endpoint on the same gunicorn server (the baseline, same run).

    python -m bench.stats_endpoint [--requests 400]

The app runs under gunicorn as production does (the Procfile's ``--workers 2
--threads 4``), through ``bench.stats_wsgi`` which only adds ``GET /bench/ping``.
Data: ``backfill_log`` at its maximum of 2,412 months (a 10^5-row table cannot
exist: years 1900-2100 x 12, unique (year, month)), 10^5 ``month_attempts`` rows
(history the endpoint does not read), and a quota ledger. Then again after 10^5
updates of ``backfill_log`` with autovacuum off, and after 10^5 more with an old
snapshot held open (nothing removable, not even by page pruning). Requests are sequential on one
keep-alive connection, alternating stats and ping, so both see the same noise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench._common import (
    ROOT,
    Figure,
    log,
    percentile,
    report,
    set_env,
    subprocess_env,
    throwaway_database,
)
from bench._months import MAX_ROWS, build_table, old_snapshot
from bench.claim_latency import churn

SECRET = "bench-cron-secret"
ATTEMPTS = 100_000


def fill(url: str) -> None:
    """2,412 months, 10^5 attempt rows spread over them, today's quota ledger rows."""
    from sqlalchemy import text

    from backfill.db import get_engine

    engine = get_engine(url)
    build_table(engine, MAX_ROWS)
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO month_attempts (backfill_id, job_id, attempt, started_at,
                    finished_at, outcome, worker, gemini_calls, xai_calls, isbndb_calls,
                    books_generated, isbns_resolved)
                SELECT 1 + i % :months, gen_random_uuid(), 1 + i / :months,
                    now() - make_interval(secs => i), now() - make_interval(secs => i) + '30 s',
                    CASE WHEN i % 5 = 0 THEN 'retry' ELSE 'completed' END, 'bench@host',
                    1, 1, 3, 25, 20
                FROM generate_series(0, :n - 1) AS i
                """
            ),
            {"months": MAX_ROWS, "n": ATTEMPTS},
        )
        conn.execute(
            text(
                """
                INSERT INTO quota_usage (provider, "window", window_start, calls)
                SELECT p, 'day', date_trunc('day', now()) - make_interval(days => d), 100 + d
                FROM unnest(ARRAY['gemini', 'xai', 'isbndb']) AS p, generate_series(0, 29) AS d
                """
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def start_server(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    from bench._sandbox import free_port

    port = free_port()
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                "--workers", "2", "--threads", "4", "--timeout", "30",
                "--graceful-timeout", "3", "bench.stats_wsgi:create_app()",
            ],
            cwd=ROOT, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log_path.read_text()[-2000:]}")
        try:
            requests.get(base + "/bench/ping", timeout=2).raise_for_status()
            return proc, base
        except requests.RequestException:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    f"gunicorn not answering: {log_path.read_text()[-2000:]}"
                ) from None
            time.sleep(0.1)


def measure(base: str, n: int) -> dict[str, list[float]]:
    http = requests.Session()
    headers = {"X-Cron-Secret": SECRET}
    stats_url, ping_url = base + "/api/internal/backfill-stats", base + "/bench/ping"
    for _ in range(20):  # warm both workers' pools and imports
        http.get(stats_url, headers=headers, timeout=10).raise_for_status()
        http.get(ping_url, timeout=10).raise_for_status()
    times: dict[str, list[float]] = {"stats": [], "ping": []}
    for _ in range(n):
        for name, url in (("stats", stats_url), ("ping", ping_url)):
            t0 = time.perf_counter()
            response = http.get(url, headers=headers, timeout=10)
            times[name].append(time.perf_counter() - t0)
            response.raise_for_status()
    body = http.get(stats_url, headers=headers, timeout=10).json()
    assert body["total_months"] == MAX_ROWS, body["total_months"]
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args(argv)

    results: dict[str, dict[str, list[float]]] = {}
    with throwaway_database("stats") as url, tempfile.TemporaryDirectory() as tmp:
        from sqlalchemy import text

        from backfill.db import get_engine

        engine = get_engine(url)
        set_env(BACKFILL_CRON_SECRET=SECRET)
        fill(url)
        proc, base = start_server(Path(tmp) / "gunicorn.log")
        try:
            results["2,412 months + 10^5 attempts"] = measure(base, args.requests)
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE backfill_log SET (autovacuum_enabled = false)"))
            churn(engine, 100_000)
            log("10^5 updates of backfill_log without vacuum done")
            results["same + 10^5 updates, no vacuum"] = measure(base, args.requests)
            with old_snapshot(engine):  # nothing removable, not even by page pruning
                churn(engine, 100_000)
                log("10^5 more updates under an old snapshot done")
                results["same + 10^5 more updates, old snapshot open"] = measure(
                    base, args.requests
                )
        finally:
            proc.terminate()
            proc.wait(15)

    figures: list[Figure] = []
    for case, times in results.items():
        for p in (50, 99):
            figures.append(
                Figure(
                    f"backfill-stats p{p} @ {case}",
                    percentile(times["stats"], p) * 1000,
                    "ms",
                    "GET /bench/ping (same server)",
                    percentile(times["ping"], p) * 1000,
                    f"{args.requests} requests each",
                )
            )
    report("stats-endpoint", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
