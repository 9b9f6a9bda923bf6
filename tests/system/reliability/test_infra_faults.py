"""The issue's "done means" for infrastructure faults, measured on private services.

**Restarts spend nothing.** 60 months, one worker (concurrency 3) and beat on a
PostgreSQL server and a RabbitMQ node of the test run's own (``private_stack``);
while months are being processed, 5 PostgreSQL restarts (``pg_ctl stop -m
fast``, a few seconds down, ``start``) and 5 broker restarts (``stop_app``, a
few seconds, ``start_app``), interleaved, each one only once the run has made
progress since the previous one and attempts are running. Every month must
complete with ``retry_count`` 0: no attempt ``lost``, ``failed`` or ``retry``
(an attempt the database cut short is closed ``deferred``), no book twice, and
no month back through its lease (the lease is far longer than the run).

**Only a dead worker's attempt counts.** A ``kill -9`` of the worker while it
works on months: exactly the months whose attempt was running in it have
``retry_count`` 1 and one ``lost`` attempt; every other month 0. The scheduler
claims every month in its first run, so no later scheduler run is in the worker
when it dies (a run killed between its committed claims and its publish would
bring its months back by their lease, which spends a retry by design).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from backfill.db import get_engine
from tests.conftest import WorkerProcess
from tests.system.reliability.harness import (
    attempt_outcomes,
    book_checks,
    print_figures,
    query,
    seed_range,
    status_counts,
    wait_settled,
)

pytestmark = [pytest.mark.slow]

FIRST, LAST = (2019, 1), (2023, 12)  # 60 months
RESTARTS = 5  # of each service
OUTAGE_SECONDS = 2.5
PROGRESS_BETWEEN_FAULTS = 1  # months completed since the previous fault was over
ENV = {
    "BACKFILL_BATCH_SIZE": "6",  # months claimed per scheduler run
    # Far longer than the run: a month can only come back by its own message.
    "BACKFILL_LEASE_SECONDS": "600",
}
BOOKS_PER_MONTH = 8  # backfill_log.batch_size: small lists, short resolution
LATENCY = {"gemini": 500, "xai": 500, "isbndb": 5}


def _seed(url: str, first: tuple[int, int], last: tuple[int, int]) -> int:
    months = seed_range(url, first, last)
    with get_engine(url).begin() as conn:
        conn.execute(text("UPDATE backfill_log SET batch_size = :n"), {"n": BOOKS_PER_MONTH})
    return months


def _running(url: str, worker: WorkerProcess | None = None) -> list[tuple[str, int]]:
    """(month, attempt id) of the attempts a worker has begun and not finished."""
    sql = """SELECT l.year, l.month, a.id FROM month_attempts a
             JOIN backfill_log l ON l.id = a.backfill_id
             WHERE a.outcome = 'running' AND a.worker IS NOT NULL"""
    params: dict[str, Any] = {}
    if worker is not None:
        sql += " AND a.worker LIKE :p"
        params["p"] = worker.name.split("@")[0] + "@%"
    return [(f"{y:04d}-{m:02d}", int(i)) for y, m, i in query(url, sql, **params)]


def _completed(url: str) -> int:
    return status_counts(url).get("completed", 0)


def _retry_counts(url: str) -> dict[str, int]:
    rows = query(url, "SELECT year, month, retry_count FROM backfill_log")
    return {f"{y:04d}-{m:02d}": int(n or 0) for y, m, n in rows}


def _attempts_by_month(url: str, outcome: str) -> Counter[str]:
    rows = query(
        url,
        """SELECT l.year, l.month FROM month_attempts a JOIN backfill_log l
           ON l.id = a.backfill_id WHERE a.outcome = :o""",
        o=outcome,
    )
    return Counter(f"{y:04d}-{m:02d}" for y, m in rows)


def _mark(url: str, deadline: float) -> tuple[int, int]:
    """Months completed and the highest attempt id now (the database just came back)."""
    while True:
        try:
            (row,) = query(
                url,
                """SELECT (SELECT count(*) FROM backfill_log WHERE status = 'completed'),
                          (SELECT coalesce(max(id), 0) FROM month_attempts)""",
            )
            return int(row[0]), int(row[1])
        except Exception:  # not accepting connections yet: ask again
            assert time.monotonic() < deadline, "the database did not come back"
            time.sleep(0.1)


def _wait_for_work(url: str, mark: tuple[int, int], deadline: float) -> int:
    """Until, since ``mark`` (taken when the previous fault was over),
    ``PROGRESS_BETWEEN_FAULTS`` more months completed and at least two new
    attempts are running; returns the months completed then. Attempts an
    earlier outage left ``running`` (their retry is on its way) do not count."""
    done_before, last_attempt = mark
    while True:
        assert time.monotonic() < deadline, f"no progress: {status_counts(url)}"
        done = _completed(url)
        fresh = [a for _, a in _running(url) if a > last_attempt]
        if done >= done_before + PROGRESS_BETWEEN_FAULTS and len(fresh) >= 2:
            return done
        time.sleep(0.05)


def _bad_attempts(url: str) -> list[Any]:
    return query(
        url,
        """SELECT l.year, l.month, a.id, a.job_id, a.attempt, a.worker, a.outcome, a.error
           FROM month_attempts a JOIN backfill_log l ON l.id = a.backfill_id
           WHERE a.outcome IN ('lost', 'failed', 'retry') OR l.retry_count > 0
           ORDER BY a.id""",
    )


@pytest.mark.timeout(240)
def test_restarts_of_postgresql_and_rabbitmq_spend_no_retry(private_stack: Any) -> None:
    stack = private_stack
    url, postgres, rabbit = stack.url, stack.postgres, stack.rabbitmq
    stack.sandbox.configure(latency_ms=LATENCY)
    months = _seed(url, FIRST, LAST)
    assert months == 60
    started = time.monotonic()
    worker = stack.worker(concurrency=3, **ENV)
    beat = stack.beat(**ENV)

    # kind, attempts running (begun since the previous fault was over, and earlier
    # ones an outage cut short whose retry is still on its way), months done, seconds
    faults: list[tuple[str, list[int], list[int], int, float]] = []
    deadline = time.monotonic() + 150
    mark = (0, 0)
    for i in range(2 * RESTARTS):
        done = _wait_for_work(url, mark, deadline)
        running = [attempt for _, attempt in _running(url)]
        fresh = [a for a in running if a > mark[1]]
        waiting = [a for a in running if a <= mark[1]]
        down = time.monotonic()
        if i % 2 == 0:
            postgres.stop()
            time.sleep(OUTAGE_SECONDS)
            postgres.start()
            kind = "postgresql"
        else:
            rabbit.stop_app()
            time.sleep(OUTAGE_SECONDS)
            rabbit.start_app()
            kind = "rabbitmq"
        faults.append((kind, fresh, waiting, done, time.monotonic() - down))
        mark = _mark(url, deadline)

    counts = wait_settled(url, timeout=120)
    elapsed = time.monotonic() - started
    outcomes = attempt_outcomes(url)
    retry_counts = _retry_counts(url)
    books = book_checks(url)
    lease_expired = int(
        query(url, "SELECT count(*) FROM month_attempts WHERE error LIKE 'lease expired%'")[0][0]
    )
    bad = _bad_attempts(url)
    ended = {
        int(i): o
        for i, o in query(url, "SELECT id, outcome FROM month_attempts WHERE worker IS NOT NULL")
    }
    log = worker.log()
    print_figures(
        "5 postgresql + 5 rabbitmq restarts",
        months=months,
        restarts=", ".join(
            f"{k} {sum(f[0] == k for f in faults)}" for k in ("postgresql", "rabbitmq")
        ),
        **{
            f"fault {n + 1}": f"{kind:<10} {len(ids)} running -> "
            f"{dict(Counter(ended.get(a, '?') for a in ids))}"
            + (f" (+{len(cut)} cut earlier, awaiting retry)" if cut else "")
            + f"; {done_then} done; stop to up {secs:.1f}s"
            for n, (kind, ids, cut, done_then, secs) in enumerate(faults)
        },
        by_status=counts,
        attempts=outcomes,
        retry_count_histogram=dict(sorted(Counter(retry_counts.values()).items())),
        lease_expired=lease_expired,
        duplicates=books["duplicates"],
        books=f"{books['books']} stored, sum of isbns_resolved {books['resolved_sum']}",
        worker_log=f"{log.count('database unreachable mid-attempt')} mid-attempt DB retries, "
        f"{log.count('database unreachable, retrying')} before-attempt DB retries, "
        f"{log.count('Connected to amqp')} broker connections",
        beat_alive=beat.alive(),
        seconds=round(elapsed, 1),
    )
    for row in bad:
        print("   spent:", tuple(row))
    if bad:
        print(log[-6000:])

    assert counts == {"completed": months}, counts
    assert len(faults) == 2 * RESTARTS
    assert bad == [], "an infrastructure fault spent a retry (see 'spent:' lines)"
    assert set(retry_counts.values()) == {0}, retry_counts
    assert not {"lost", "failed", "retry", "running"} & set(outcomes), outcomes
    assert outcomes["completed"] == months
    assert lease_expired == 0, "a month came back by its lease"
    assert books["duplicates"] == 0
    assert books["mismatched_months"] == [], books["mismatched_months"]
    assert beat.alive()


@pytest.mark.timeout(120)
def test_kill_9_counts_only_the_killed_attempts(private_stack: Any) -> None:
    stack = private_stack
    url = stack.url
    stack.sandbox.configure(latency_ms=LATENCY)
    months = _seed(url, (2023, 1), (2023, 12))
    # One scheduler run claims every month: none is left for a run the kill could cut.
    env = {**ENV, "BACKFILL_BATCH_SIZE": str(months)}
    started = time.monotonic()
    worker = stack.worker(concurrency=2, **env)
    stack.beat(**env)

    deadline = time.monotonic() + 60
    while not (_completed(url) >= 2 and len(_running(url, worker)) == 2):
        assert time.monotonic() < deadline, f"no progress: {status_counts(url)}"
        time.sleep(0.05)
    worker.kill()
    # Dead now: what it left running is exactly what its redeliveries find.
    killed = _running(url, worker)
    done_at_kill = _completed(url)
    stack.restart(worker)

    counts = wait_settled(url, timeout=90)
    elapsed = time.monotonic() - started
    outcomes = attempt_outcomes(url)
    retry_counts = _retry_counts(url)
    lost = _attempts_by_month(url, "lost")
    books = book_checks(url)
    print_figures(
        "kill -9 of the worker",
        months=months,
        killed_running=f"{sorted(m for m, _ in killed)} ({done_at_kill} done at the kill)",
        by_status=counts,
        attempts=outcomes,
        retry_count_histogram=dict(sorted(Counter(retry_counts.values()).items())),
        lost_by_month=dict(lost),
        duplicates=books["duplicates"],
        seconds=round(elapsed, 1),
    )

    assert counts == {"completed": months}, counts
    assert killed, "the kill struck no running attempt"
    hit = {m for m, _ in killed}
    assert {m: n for m, n in retry_counts.items() if n} == dict.fromkeys(hit, 1)
    assert dict(lost) == dict.fromkeys(hit, 1)
    lost_ids = {int(r[0]) for r in query(url, "SELECT id FROM month_attempts WHERE outcome='lost'")}
    assert lost_ids == {i for _, i in killed}, "the lost attempts are not the killed ones"
    assert not {"failed", "retry", "running"} & set(outcomes), outcomes
    assert books["duplicates"] == 0
