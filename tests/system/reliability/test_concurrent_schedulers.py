"""Concurrent schedulers: 10 processes x 20 ``schedule()`` calls over 300 months.

Each process is a fresh interpreter (spawn) with its own engine and broker
connection, like ten beats or API callers on different machines. They start
together and claim with ``SELECT ... FOR UPDATE SKIP LOCKED``. No worker runs, so
every message they published is still in the queue and is read back from
RabbitMQ: zero months may be claimed twice, in the rows, in what the processes
report, or in the messages.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

import pytest

from tests.conftest import purge_queue
from tests.support.brokerutil import drain
from tests.system.reliability.claimers import claim_loop
from tests.system.reliability.harness import print_figures, query, seed_range, status_counts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PROCESSES, CALLS, BATCH = 10, 20, 5


def test_ten_processes_claim_each_month_at_most_once(committed_db: str, queue_name: str) -> None:
    url = committed_db
    purge_queue(queue_name)
    assert seed_range(url, (2000, 1), (2024, 12)) == 300
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=claim_loop, args=(url, CALLS, BATCH, ready, go, out))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=90)
        started = time.monotonic()
        go.set()
        results = [out.get(timeout=90) for _ in procs]
        elapsed = time.monotonic() - started
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    failures = [r[1] for r in results if r[0] != "ok"]
    assert not failures, failures
    claimed = [c for _, got, _ in results for c in got]
    publish_errors = [e for _, _, errs in results for e in errs]
    messages = drain(queue_name)
    purge_queue(queue_name)

    by_month = Counter((y, m) for y, m, _ in claimed)
    by_message = Counter((msg["kwargs"]["year"], msg["kwargs"]["month"]) for msg in messages)
    rows = {
        (y, m): str(job) for y, m, job in query(url, "SELECT year, month, job_id FROM backfill_log")
    }
    attempts = int(query(url, "SELECT count(*) FROM month_attempts")[0][0])
    per_process = sorted(len(got) for _, got, _ in results)
    print_figures(
        "concurrent schedulers",
        months=300,
        processes=f"{PROCESSES} x {CALLS} calls, batch {BATCH}",
        claims=f"{len(claimed)} (per process {per_process})",
        duplicates_claimed=sum(n - 1 for n in by_month.values()),
        messages=len(messages),
        duplicates_published=sum(n - 1 for n in by_message.values()),
        publish_errors=len(publish_errors),
        attempts=attempts,
        seconds=round(elapsed, 2),
    )
    assert not publish_errors, publish_errors
    assert len(claimed) == 300 and max(by_month.values()) == 1
    assert len(messages) == 300 and max(by_message.values()) == 1
    assert status_counts(url) == {"processing": 300}
    assert attempts == 300
    # what each process says it claimed, the row and the message agree on the job id
    assert {(y, m): job for y, m, job in claimed} == rows
    published = {(msg["kwargs"]["year"], msg["kwargs"]["month"]): msg for msg in messages}
    for key, job in rows.items():
        assert published[key]["id"] == job == published[key]["kwargs"]["job_id"]
        assert published[key]["task"] == "backfill.process_month"
