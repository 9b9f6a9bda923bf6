"""Benchmark 2: claim latency p50/p95 by table size, and after 10^5 updates without vacuum.

    python -m bench.claim_latency [--samples 200]

A "claim" is one real ``scheduler.schedule(session, batch_size=10)`` call (reap,
quota check, SELECT ... FOR UPDATE SKIP LOCKED, 10 claims, heartbeat, COMMIT)
with a publisher that drops the messages; between two samples the claimed months
are put back to pending (untimed). The candidate SELECT alone is timed too.

Cases (the baseline is the 10^3-row table, measured in the same run):
* 10^3 rows;
* 2,412 rows -- the most the schema allows (years 1900-2100 x 12 months, unique
  (year, month)): a 10^5-row ``backfill_log`` cannot exist;
* 2,412 rows after 10^5 updates of the scheduler's months with autovacuum off
  (pending <-> processing, as claims do): dead tuples in the heap and indexes;
  PostgreSQL still prunes dead versions as it reads pages, so this case is
  repeated with an old snapshot held open (nothing removable: the worst case);
* the same two tables without the partial index ``idx_backfill_log_pending``,
  to show what it is worth.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench._common import (
    DropPublisher,
    Figure,
    log,
    percentile,
    report,
    throwaway_database,
    truncate_all,
)
from bench._months import (
    MAX_ROWS,
    build_table,
    dead_tuples,
    old_snapshot,
    reset_claims,
    vacuum_analyze,
)
from bench._plans import explain

BATCH = 10
VACUUM_EVERY = 10  # healthy cases: autovacuum's job, done by hand so it is deterministic


def churn(engine: Any, updates: int) -> int:
    """``updates`` row updates of the scheduler's 300 months, pending <-> processing,
    one committed statement per round (an even number of rounds: all end pending)."""
    from sqlalchemy import text

    rounds = -(-updates // 300)
    rounds += rounds % 2
    done = 0
    with engine.connect() as conn:
        for _ in range(rounds):
            result = conn.execute(
                text(
                    "UPDATE backfill_log SET updated_at = now(), status = CASE status"
                    " WHEN 'pending' THEN 'processing' WHEN 'processing' THEN 'pending'"
                    " ELSE status END WHERE year BETWEEN 2000 AND 2024"
                )
            )
            conn.commit()
            done += int(result.rowcount)
        # Publish this backend's table statistics now (dead tuples), not in 10 s.
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        conn.commit()
    return done


def measure(engine: Any, samples: int, vacuum: bool) -> dict[str, Any]:
    """Time ``samples`` schedule() calls and ``samples`` candidate SELECTs."""
    from backfill import scheduler
    from backfill.config import get_settings
    from backfill.db import session_factory

    settings = get_settings()
    factory = session_factory()
    publisher = DropPublisher()
    query = scheduler.candidates_query(settings, dt.datetime.now(dt.UTC), limit=BATCH)
    plan = explain(engine, query.with_for_update(skip_locked=True))

    selects: list[float] = []
    for _ in range(samples):
        with factory() as session:
            start = time.perf_counter()
            rows = session.scalars(query.with_for_update(skip_locked=True)).all()
            selects.append(time.perf_counter() - start)
            session.rollback()
        assert len(rows) == BATCH, len(rows)

    claims: list[float] = []
    for i in range(samples):
        with factory() as session:
            start = time.perf_counter()
            result = scheduler.schedule(session, batch_size=BATCH, publisher=publisher)
            claims.append(time.perf_counter() - start)
        assert result.triggered == BATCH, result
        reset_claims(engine)
        if vacuum and (i + 1) % VACUUM_EVERY == 0:
            vacuum_analyze(engine)
    return {
        "claim_p50_ms": percentile(claims, 50) * 1000,
        "claim_p95_ms": percentile(claims, 95) * 1000,
        "select_p50_ms": percentile(selects, 50) * 1000,
        "select_p95_ms": percentile(selects, 95) * 1000,
        **plan,
    }


@dataclass(frozen=True)
class Case:
    name: str
    rows: int
    updates: int = 0
    old_snapshot: bool = False  # an open snapshot during churn and measurement
    partial_index: bool = True


def run_case(url: str, case: Case, samples: int) -> dict[str, Any]:
    from sqlalchemy import text

    from backfill.db import get_engine

    engine = get_engine(url)
    truncate_all(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE backfill_log RESET (autovacuum_enabled)"))
        conn.execute(
            text(
                "CREATE INDEX IF NOT EXISTS idx_backfill_log_pending ON backfill_log"
                " (year DESC, month DESC) WHERE status IN ('pending', 'retry')"
            )
        )
    built = build_table(engine, case.rows)
    with old_snapshot(engine) if case.old_snapshot else contextlib.nullcontext():
        if case.updates:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE backfill_log SET (autovacuum_enabled = false)"))
            started = time.perf_counter()
            updated = churn(engine, case.updates)
            log(f"{updated:,} updates without vacuum in {time.perf_counter() - started:.1f}s")
        if not case.partial_index:
            with engine.begin() as conn:
                conn.execute(text("DROP INDEX idx_backfill_log_pending"))
        shape = dead_tuples(engine)
        figures = measure(engine, samples, vacuum=not case.updates)
    return {"rows": built, **asdict(case), **shape, **figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--updates", type=int, default=100_000)
    args = parser.parse_args(argv)

    n = args.updates
    churned = "+ 10^5 updates, no vacuum"
    pinned = "+ 10^5 updates, no vacuum, old snapshot open"
    cases = [
        Case("10^3 rows", 1_000),
        Case("2,412 rows (max)", MAX_ROWS),
        Case(f"2,412 {churned}", MAX_ROWS, n),
        Case(f"2,412 {pinned}", MAX_ROWS, n, old_snapshot=True),
        Case("2,412 rows, no partial index", MAX_ROWS, partial_index=False),
        Case(f"2,412 {churned}, no partial index", MAX_ROWS, n, partial_index=False),
        Case(f"2,412 {pinned}, no partial index", MAX_ROWS, n, True, partial_index=False),
    ]
    results: dict[str, dict[str, Any]] = {}
    with throwaway_database("claims") as url:
        for case in cases:
            log(f"case: {case.name}")
            results[case.name] = run_case(url, case, args.samples)

    base_name = cases[0].name
    base = results[base_name]
    figures: list[Figure] = []
    for name, r in results.items():
        baseline = base_name if name != base_name else ""
        for key, label in (("claim_p50", "claim p50"), ("claim_p95", "claim p95")):
            figures.append(
                Figure(
                    f"schedule() {label} (batch 10) @ {name}",
                    r[f"{key}_ms"],
                    "ms",
                    baseline,
                    base[f"{key}_ms"] if baseline else None,
                )
            )
        figures.append(
            Figure(
                f"candidate SELECT p50 @ {name}",
                r["select_p50_ms"],
                "ms",
                baseline,
                base["select_p50_ms"] if baseline else None,
                f"{r['plan']}; {r['shared_buffers']} buffers; "
                f"{r['dead']:,} dead tuples, {r['heap_pages']} heap pages",
            )
        )
    report("claim-latency", figures, {"cases": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
