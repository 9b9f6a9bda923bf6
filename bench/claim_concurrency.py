"""Benchmark 3: claim throughput with 1, 2 and 8 concurrent claimers, and duplicates.

    python -m bench.claim_concurrency [--claimers 1,2,8] [--batch 10]

Each claimer is a separate process (as two beats, the API and the CLI would be)
with its own engine and session, calling ``scheduler.schedule(batch_size=10)``
with a publisher that drops the messages, until no candidate is left. 1,500
pending months (1900-2024) are claimed per round. Duplicates are counted from
what the claimers returned *and* from the database (one attempt row per month):
both must be 0. The baseline is one claimer, measured in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from collections import Counter
from typing import Any

from bench._common import DropPublisher, Figure, log, percentile, report, throwaway_database
from bench._months import reset_claims, vacuum_analyze

YEARS = (1900, 2024)
MONTHS = (YEARS[1] - YEARS[0] + 1) * 12


def claimer(barrier: Any, batch: int, out: Any) -> None:
    """One process: claim until the candidates are gone; send back what it got."""
    from backfill import scheduler
    from backfill.db import session_factory

    factory = session_factory()
    publisher = DropPublisher()
    got: list[tuple[int, int]] = []
    calls: list[float] = []
    with factory() as warm:  # open the pooled connection before the clock starts
        scheduler.is_paused(warm)
    barrier.wait()
    while True:
        with factory() as session:
            t0 = time.perf_counter()
            result = scheduler.schedule(
                session, batch_size=batch, year_range=YEARS, publisher=publisher
            )
            calls.append(time.perf_counter() - t0)
            got += [(m.year, m.month) for m in result.months]
            if result.months:
                continue
            # Nothing claimed: either all gone, or the rest is locked by others.
            left = scheduler.schedule(session, batch_size=1, year_range=YEARS, dry_run=True)
            if not left.months:
                break
    out.put({"months": got, "calls": calls})


def run_round(url: str, claimers: int, batch: int) -> dict[str, Any]:
    from sqlalchemy import text

    from backfill.db import get_engine

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(claimers + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=claimer, args=(barrier, batch, out)) for _ in range(claimers)]
    for p in procs:
        p.start()
    barrier.wait(timeout=60)
    start = time.perf_counter()
    answers = [out.get(timeout=120) for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join(10)

    claimed = [m for a in answers for m in a["months"]]
    calls = [c for a in answers for c in a["calls"]]
    with get_engine(url).connect() as conn:
        per_month = conn.execute(
            text("SELECT backfill_id, count(*) FROM month_attempts GROUP BY backfill_id")
        ).all()
        processing = conn.execute(
            text("SELECT count(*) FROM backfill_log WHERE status = 'processing'")
        ).scalar_one()
    db_dupes = sum(n - 1 for _, n in per_month if n > 1)
    dupes = sum(n - 1 for n in Counter(claimed).values() if n > 1)
    assert len(set(claimed)) == MONTHS == processing, (len(set(claimed)), processing)
    return {
        "claimers": claimers,
        "claimed": len(claimed),
        "wall_s": wall,
        "months_per_s": len(set(claimed)) / wall,
        "duplicates_returned": dupes,
        "duplicates_in_db": db_dupes,
        "call_p50_ms": percentile(calls, 50) * 1000,
        "call_p95_ms": percentile(calls, 95) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claimers", default="1,2,8")
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.claimers.split(",")]

    rounds: list[dict[str, Any]] = []
    with throwaway_database("conc") as url:
        from backfill import scheduler
        from backfill.db import get_engine, session_factory

        engine = get_engine(url)
        with session_factory()() as session:
            scheduler.seed_months(session, *YEARS)
            session.commit()
        for n in counts:
            reset_claims(engine)
            vacuum_analyze(engine)
            result = run_round(url, n, args.batch)
            log(
                f"{n} claimer(s): {result['months_per_s']:,.0f} months/s, "
                f"duplicates {result['duplicates_returned']}/{result['duplicates_in_db']}"
            )
            rounds.append(result)

    base = rounds[0]
    figures: list[Figure] = []
    for r in rounds:
        baseline = f"{base['claimers']} claimer" if r is not base else ""
        figures += [
            Figure(
                f"claim throughput, {r['claimers']} claimer(s), batch {args.batch}",
                r["months_per_s"],
                "months/s",
                baseline,
                base["months_per_s"] if baseline else None,
                f"{MONTHS:,} months in {r['wall_s']:.2f}s",
            ),
            Figure(
                f"schedule() call p95, {r['claimers']} claimer(s)",
                r["call_p95_ms"],
                "ms",
                baseline,
                base["call_p95_ms"] if baseline else None,
                f"p50 {r['call_p50_ms']:.1f} ms",
            ),
            Figure(
                f"duplicates, {r['claimers']} claimer(s)",
                r["duplicates_returned"] + r["duplicates_in_db"],
                "",
                note="must be 0 (returned + attempt rows)",
            ),
        ]
    report("claim-concurrency", figures, {"rounds": rounds})
    return 0 if all(r["duplicates_returned"] + r["duplicates_in_db"] == 0 for r in rounds) else 1


if __name__ == "__main__":
    raise SystemExit(main())
