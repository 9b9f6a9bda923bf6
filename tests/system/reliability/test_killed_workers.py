"""Killed workers: ``kill -9`` of a whole worker (main process and pool) ten times
during a 100-month run; nothing is lost, nothing is done twice.

Two workers share the queue; beat schedules every second. Each kill SIGKILLs one
worker's process group at a random moment (spread over the run by its progress)
and starts it again. RabbitMQ re-queues the messages the dead worker had not
acknowledged (``acks_late``), the other worker (or the restarted one) picks them
up, and ``months.begin`` counts the interrupted attempt as one lost attempt.

What is checked afterwards, and why each side is exactly what it is:

* every month ``completed``, none ``processing`` (stuck), none ``failed``;
* no ISBN stored twice, and each month's ``isbns_resolved`` is the number of
  books stored for it (so no month's counters disagree with the books);
* every request is charged to its month and to its attempt in the same
  transaction as its quota ledger unit, *before* it is sent (``quota.charging``):
  the months' counters equal the ledger exactly, the sum of the attempts'
  counters equals the months' (killed, ``lost`` attempts included), and both
  hold every request the sandbox received plus at most the reservations of
  requests a kill struck between the reservation's commit and the send (per
  month: at most the month's lost attempts);
* each lost attempt spent exactly one retry: ``sum(retry_count)`` = lost attempts.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.conftest import WorkerProcess
from tests.system.reliability.harness import (
    PROVIDERS,
    attempt_calls,
    attempt_outcomes,
    book_checks,
    ledger_calls,
    month_calls,
    print_figures,
    query,
    seed_range,
    status_counts,
    wait_settled,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KILLS = 10
# Short leases, so the reaper takes part as well as redelivery; batches small
# enough that a claimed month never waits in the queue longer than its lease.
ENV = {"BACKFILL_LEASE_SECONDS": "8", "BACKFILL_BATCH_SIZE": "8"}


def _running_on(url: str, worker: WorkerProcess) -> int:
    """Attempts the worker is in the middle of right now."""
    prefix = worker.name.split("@")[0] + "@%"
    rows = query(
        url,
        "SELECT count(*) FROM month_attempts WHERE outcome = 'running' AND worker LIKE :p",
        p=prefix,
    )
    return int(rows[0][0])


def _per_month_gaps(url: str, by_month: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per month: generator requests the month was charged minus those the sandbox
    saw -- only a kill between a reservation and its send makes them differ, so at
    most once per generator per lost attempt."""
    rows = query(
        url,
        """
        SELECT l.year, l.month, l.gemini_calls, l.xai_calls,
               count(a.id) FILTER (WHERE a.outcome = 'lost') AS lost
        FROM backfill_log l LEFT JOIN month_attempts a ON a.backfill_id = l.id
        GROUP BY l.id
        """,
    )
    over: list[str] = []
    unrecorded = {"gemini": 0, "xai": 0}
    for year, month, gemini, xai, lost in rows:
        label = f"{year:04d}-{month:02d}"
        seen = by_month.get(label, {})
        for provider, recorded in (("gemini", gemini), ("xai", xai)):
            gap = recorded - seen.get(provider, 0)
            unrecorded[provider] += gap
            if not 0 <= gap <= lost:
                over.append(f"{label} {provider}: sandbox {seen.get(provider, 0)}, "
                            f"charged {recorded}, lost attempts {lost}")  # fmt: skip
    return {"reserved_not_sent": unrecorded, "violations": over}


def test_ten_kill_9_during_a_100_month_run(stack: Any) -> None:
    sandbox, url = stack.sandbox, stack.url
    # A little latency, so a kill usually lands in the middle of a month.
    sandbox.configure(latency_ms={"gemini": 300, "xai": 300, "isbndb": 10})
    months = seed_range(url, (2016, 5), (2024, 8))
    assert months == 100
    workers = [stack.worker(**ENV), stack.worker(**ENV)]
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    # Kill moments: random points of the run's progress (months settled).
    targets = sorted(rng.sample(range(3, 90), KILLS))
    started = time.monotonic()
    stack.beat(**ENV)

    kills = hit = 0
    deadline = time.monotonic() + 200
    while kills < KILLS:
        assert time.monotonic() < deadline, f"run stalled at {status_counts(url)}"
        done = status_counts(url).get("completed", 0)
        if done < targets[kills]:
            time.sleep(0.1)
            continue
        time.sleep(rng.uniform(0, 0.6))
        victim = rng.choice(workers)
        hit += _running_on(url, victim)
        victim.kill()
        kills += 1
        stack.restart(victim)

    counts = wait_settled(url, timeout=150)
    elapsed = time.monotonic() - started
    time.sleep(1.0)  # the sandbox finishes answering requests whose client died
    served = sandbox.stats()
    calls = {p: served["calls"][p] for p in PROVIDERS}
    ledger, recorded, per_attempt = ledger_calls(url), month_calls(url), attempt_calls(url)
    books = book_checks(url)
    gaps = _per_month_gaps(url, served["by_month"])
    outcomes = attempt_outcomes(url)
    retries = query(url, "SELECT max(retry_count), sum(retry_count) FROM backfill_log")[0]
    print_figures(
        "killed workers",
        months=months,
        kills=f"{kills} (attempts running in the killed worker: {hit}; seed {seed})",
        by_status=counts,
        stuck=counts.get("processing", 0),
        duplicates=books["duplicates"],
        books=f"{books['books']} stored, sum of isbns_resolved {books['resolved_sum']}",
        attempts=outcomes,
        retry_count=f"max {retries[0]}, total {retries[1]}",
        calls_sandbox=calls,
        calls_ledger=ledger,
        calls_backfill_log=recorded,
        calls_attempts=per_attempt,
        reserved_not_sent={p: ledger[p] - calls[p] for p in PROVIDERS},
        seconds=round(elapsed, 1),
    )

    assert counts == {"completed": months}, f"a month did not complete: {counts}"
    assert books["duplicates"] == 0
    assert books["mismatched_months"] == [], books["mismatched_months"]
    assert books["books"] == books["resolved_sum"]
    assert recorded == ledger  # every call charged to its month, killed attempts too
    assert per_attempt == recorded  # each call charged to its attempt too, lost ones included
    assert gaps["violations"] == [], gaps["violations"]
    for p in PROVIDERS:
        assert calls[p] <= ledger[p], (p, calls, ledger)
        # at most one reservation per in-flight request of the killed worker
        # (2 pool processes, each with its two generator threads)
        assert ledger[p] - calls[p] <= 4 * kills, (p, ledger, calls)
    assert outcomes.get("running", 0) == 0  # every interrupted attempt was closed as lost
    assert outcomes["completed"] == months
    # each lost attempt spent exactly one retry, and nothing else did
    assert retries[1] == outcomes.get("lost", 0)
