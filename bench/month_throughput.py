"""Benchmark 1: month tasks per second and dispatch->start latency, against a bare
Celery no-op task on the same broker and worker settings (the baseline, same run).

    python -m bench.month_throughput [--months 96] [--noops 300] [--latency-samples 15]

Both run on a ``celery worker -c 2 --pool prefork`` subprocess configured from
the same ``celeryconfig`` (acks_late, prefetch 1, publisher confirms), on a
queue of their own; the sandbox (0 ms latency, separate process) stands in
for Gemini, xAI and ISBNdb, with the ledger's rates opened wide.

* throughput: every month claimed by ``scheduler.schedule`` (batch 50) and
  published at once; months / (all seen completed - first publish). The no-op
  tasks likewise: count / (last start - first publish).
* latency: one message at a time on an idle worker; publish -> start, where a
  month "starts" when its worker opens the attempt (``month_attempts.started_at``)
  and a no-op when its body runs. Claim -> start for months too
  (``backfill_log.started_at`` is the claim). The latency months are older
  months dispatched by hand, so the throughput months start cold (no cache).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench._common import (
    Figure,
    log,
    mean,
    percentile,
    report,
    set_env,
    throwaway_database,
    throwaway_queue,
)
from bench._sandbox import sandbox_process
from bench._workers import Worker

WARM_UP = 2  # one task per pool process first, not measured (imports, connections)
WIDE_OPEN = {
    "ISBNDB_RATE_PER_SECOND": 1000,
    "ISBNDB_DAILY_LIMIT": 1_000_000,
    "GEMINI_RATE_PER_MINUTE": 0,
    "GEMINI_DAILY_LIMIT": 1_000_000,
    "XAI_RATE_PER_MINUTE": 0,
    "XAI_DAILY_LIMIT": 1_000_000,
}


class TimingPublisher:
    """BENCHMARK ONLY: the real ``CeleryPublisher``, one message at a time, noting
    the wall-clock time each publish began."""

    def __init__(self) -> None:
        from backfill.broker import CeleryPublisher

        self.inner = CeleryPublisher()
        self.sent: dict[uuid.UUID, float] = {}

    def publish(self, messages: Iterable[Any]) -> dict[uuid.UUID, str]:
        errors: dict[uuid.UUID, str] = {}
        for message in messages:
            self.sent[message.job_id] = time.time()
            errors.update(self.inner.publish([message]))
        return errors


def wait_completed(url: str, expected: int, timeout: float) -> float:
    """Poll until ``expected`` months are completed; returns when that was seen (epoch s).

    The wall clock of the observer, not ``completed_at``: that column holds the
    start of the transaction that completed the month (PostgreSQL ``now()``),
    which can be seconds before the month really finished.
    """
    from sqlalchemy import text

    from backfill.db import get_engine

    deadline = time.monotonic() + timeout
    with get_engine(url).connect() as conn:
        while True:
            done = conn.execute(
                text("SELECT count(*) FROM backfill_log WHERE status = 'completed'")
            ).scalar_one()
            conn.rollback()
            if done >= expected:
                return time.time()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done} of {expected} months completed in {timeout:.0f}s")
            time.sleep(0.01)


def attempt_starts(url: str) -> dict[uuid.UUID, tuple[float, float]]:
    """Per completed month's job: (claimed, attempt started), epoch seconds."""
    from sqlalchemy import text

    from backfill.db import get_engine

    with get_engine(url).connect() as conn:
        rows = conn.execute(
            text(
                "SELECT b.job_id, extract(epoch FROM b.started_at) AS claimed,"
                " extract(epoch FROM a.started_at) AS started"
                " FROM backfill_log b JOIN month_attempts a"
                " ON a.backfill_id = b.id AND a.job_id = b.job_id"
                " WHERE b.status = 'completed'"
            )
        ).all()
    return {r.job_id: (float(r.claimed), float(r.started)) for r in rows}


def run_months(url: str, queue: str, tmp: Path, n: int, samples: int) -> dict[str, Any]:
    from backfill import scheduler
    from backfill.db import session_factory

    factory = session_factory(url)
    total = n + samples + WARM_UP
    with factory() as s:
        first_key = 2024 * 12 + 11 - (total - 1)  # the newest ``total`` months to 2024-12
        scheduler.seed_months(s, first_key // 12, 2024, start_month=first_key % 12 + 1)
        s.commit()
    oldest = sorted((2024 - i // 12, 12 - i % 12) for i in range(total))
    warm_up, oldest = oldest[:WARM_UP], oldest[WARM_UP : WARM_UP + samples]
    with Worker("backfill", queue, tmp / "month-worker.log"):
        # Each pool process's first task pays for its imports and connections.
        with factory() as s:
            for year, month in warm_up:
                scheduler.dispatch_month(s, year, month)
        wait_completed(url, WARM_UP, 60)
        # Latency, on an idle worker: one (old) month at a time, by hand.
        one_by_one = TimingPublisher()
        run_s: list[float] = []
        for year, month in oldest:
            with factory() as s:
                scheduler.dispatch_month(s, year, month, publisher=one_by_one)
            done = wait_completed(url, WARM_UP + len(one_by_one.sent), 60)
            run_s.append(done - max(one_by_one.sent.values()))
        idle = {job: t for job, t in attempt_starts(url).items() if job in one_by_one.sent}
        # Throughput: the scheduler claims the other n months, 50 a call.
        burst = TimingPublisher()
        first = time.time()
        while True:
            with factory() as s:
                result = scheduler.schedule(s, batch_size=50, publisher=burst)
            assert not result.errors, result.errors
            if not result.months:
                break
        last = wait_completed(url, total, 150)
    assert len(burst.sent) == n, (len(burst.sent), n)
    return {
        "count": n,
        "per_s": n / (last - first),
        "publish_to_start": [idle[job][1] - sent for job, sent in one_by_one.sent.items()],
        "claim_to_start": [started - claimed for claimed, started in idle.values()],
        "run_s": run_s,
    }


def run_noops(queue: str, tmp: Path, n: int, samples: int) -> dict[str, Any]:
    from bench.noop_app import NOOP, app

    path = tmp / "noop.log"
    path.touch()

    def lines() -> list[tuple[float, float]]:
        out = []
        for line in path.read_text().splitlines():
            sent, started = line.split()
            out.append((float(sent), float(started)))
        return out

    def wait(count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(lines()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no-op tasks: {len(lines())} of {count} started")
            time.sleep(0.01)

    with Worker("bench.noop_app", queue, tmp / "noop-worker.log"), app.producer_or_acquire() as p:
        for _ in range(WARM_UP):
            app.send_task(NOOP, args=[time.time(), str(path)], producer=p)
        wait(WARM_UP, 30)
        for i in range(samples):
            app.send_task(NOOP, args=[time.time(), str(path)], producer=p)
            wait(WARM_UP + i + 1, 30)
        idle = lines()[WARM_UP:]
        first = time.time()
        for _ in range(n):
            app.send_task(NOOP, args=[time.time(), str(path)], producer=p)
        wait(WARM_UP + samples + n, 120)
        burst = lines()[WARM_UP + samples :]
    return {
        "count": n,
        "per_s": n / (max(started for _, started in burst) - first),
        "publish_to_start": [started - sent for sent, started in idle],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=96)
    parser.add_argument("--noops", type=int, default=300)
    parser.add_argument("--latency-samples", type=int, default=15)
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        throwaway_database("months") as url,
        throwaway_queue("months") as queue,
        sandbox_process() as sandbox,
    ):
        tmp = Path(tmp_dir)
        set_env(**sandbox.env(), **WIDE_OPEN)
        months = run_months(url, queue, tmp, args.months, args.latency_samples)
        log(f"months: {months['per_s']:.2f}/s")
        noops = run_noops(queue, tmp, args.noops, args.latency_samples)
        log(f"no-ops: {noops['per_s']:.1f}/s")
        served = sandbox.stats()["calls"]

    ms = 1000.0
    figures = [
        Figure(
            "month tasks per second, worker -c 2, sandbox 0 ms",
            months["per_s"],
            "tasks/s",
            "no-op task",
            noops["per_s"],
            f"{months['count']} months vs {noops['count']} no-ops; "
            f"one month alone: {percentile(months['run_s'], 50) * ms:.0f} ms p50 publish->done",
        ),
    ]
    for p in (50, 95):
        figures.append(
            Figure(
                f"publish->start p{p}, idle worker",
                percentile(months["publish_to_start"], p) * ms,
                "ms",
                "no-op task",
                percentile(noops["publish_to_start"], p) * ms,
                f"{args.latency_samples} samples each",
            )
        )
    figures.append(
        Figure(
            "claim->start p50 (backfill_log.started_at -> attempt start)",
            percentile(months["claim_to_start"], 50) * ms,
            "ms",
            note=f"mean {mean(months['claim_to_start']) * ms:.1f} ms",
        )
    )
    report("month-throughput", figures, {"sandbox_calls": served})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
