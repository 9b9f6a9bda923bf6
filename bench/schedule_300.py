"""Issue 3's closing figures: months claimed per second by ONE schedule() caller on the
300 seeded months (batch_size 50, repeated until all are claimed), and p50/p95 of a claim.

    python -m bench.schedule_300 [--repeats 20]

Baseline, same run: the same claims done by one hand-written SQL statement per
batch (a CTE that selects FOR UPDATE SKIP LOCKED, updates and records the
attempts) -- the floor this machine's PostgreSQL allows, with none of the ORM's
per-row round trips. Between repetitions the months go back to pending (untimed).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench._common import DropPublisher, Figure, log, percentile, report, throwaway_database
from bench._months import reset_claims, vacuum_analyze

BATCH = 50
MONTHS = 300

RAW_CLAIM = """
WITH picked AS (
    SELECT id FROM backfill_log
    WHERE status IN ('pending', 'retry') AND retry_count < 5
      AND (not_before IS NULL OR not_before <= now())
      AND (lease_expires_at IS NULL OR lease_expires_at <= now())
      AND year BETWEEN 2000 AND 2024
    ORDER BY year DESC, month DESC
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE backfill_log AS b
    SET status = 'processing', started_at = now(), completed_at = NULL, not_before = NULL,
        job_id = gen_random_uuid(), lease_expires_at = now() + interval '900 seconds',
        attempts = b.attempts + 1
    FROM picked WHERE b.id = picked.id
    RETURNING b.id, b.job_id, b.attempts
)
INSERT INTO month_attempts (backfill_id, job_id, attempt)
SELECT id, job_id, attempts FROM claimed
RETURNING backfill_id
"""


def run_once(claim: Any) -> tuple[float, list[float]]:
    """Claim batches until none is left; returns (total seconds, per-call seconds)."""
    calls: list[float] = []
    claimed = 0
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        n = claim()
        calls.append(time.perf_counter() - t0)
        claimed += n
        if n == 0:
            break
    total = time.perf_counter() - start
    assert claimed == MONTHS, claimed
    return total, calls[:-1]  # the last, empty call is not a claim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    with throwaway_database("s300") as url:
        from sqlalchemy import text

        from backfill import scheduler
        from backfill.db import get_engine, session_factory

        engine = get_engine(url)
        factory = session_factory()
        with factory() as session:
            seeded = scheduler.seed_months(session)  # 2000-2024: 300 months
            session.commit()
        assert seeded.inserted == MONTHS, seeded
        vacuum_analyze(engine)
        publisher = DropPublisher()

        def orm_claim() -> int:
            with factory() as session:
                return len(
                    scheduler.schedule(session, batch_size=BATCH, publisher=publisher).months
                )

        def raw_claim() -> int:
            with engine.begin() as conn:
                return len(conn.execute(text(RAW_CLAIM), {"batch": BATCH}).all())

        results: dict[str, dict[str, list[float]]] = {}
        for name, claim in (("schedule()", orm_claim), ("raw SQL", raw_claim)):
            totals: list[float] = []
            calls: list[float] = []
            for i in range(args.repeats):
                total, per_call = run_once(claim)
                totals.append(total)
                calls += per_call
                reset_claims(engine)
                if (i + 1) % 5 == 0:
                    vacuum_analyze(engine)
            results[name] = {"totals": totals, "calls": calls}
            log(f"{name}: {MONTHS / percentile(totals, 50):,.0f} months/s")

    orm, raw = results["schedule()"], results["raw SQL"]
    figures = [
        Figure(
            "months claimed/s, one caller, 300 months, batch 50 (median run)",
            MONTHS / percentile(orm["totals"], 50),
            "months/s",
            "raw SQL claim",
            MONTHS / percentile(raw["totals"], 50),
            f"{args.repeats} runs of 6 calls",
        ),
        Figure(
            "claim (schedule() call of 50) p50",
            percentile(orm["calls"], 50) * 1000,
            "ms",
            "raw SQL claim",
            percentile(raw["calls"], 50) * 1000,
        ),
        Figure(
            "claim (schedule() call of 50) p95",
            percentile(orm["calls"], 95) * 1000,
            "ms",
            "raw SQL claim",
            percentile(raw["calls"], 95) * 1000,
        ),
        Figure(
            "per month claimed p50",
            percentile(orm["calls"], 50) * 1000 / BATCH,
            "ms",
            "raw SQL claim",
            percentile(raw["calls"], 50) * 1000 / BATCH,
        ),
    ]
    report("schedule-300", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
