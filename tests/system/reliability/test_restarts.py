"""Restarts of the services themselves, in the middle of a run: RabbitMQ and PostgreSQL.

Every test here runs on a PostgreSQL server and a RabbitMQ node of its own
(``private_stack``, see ``tests/system/reliability/private_services.py``): stopping
them disturbs nobody, so where this file sits in the suite does not matter. The machine's own
services are never stopped; the last test proves it.

The run: 20 months, one worker (concurrency 2) and beat (every second) as
subprocesses on the private services; five of the months fail their first
attempt (both generators answer 503), so they wait out a Celery retry
countdown -- a message the worker holds unacknowledged.

**RabbitMQ** (``stop_app`` for 5, 15 and 60 s, then ``start_app``): the outage
starts while months are done, running, queued and waiting out a retry, and
while a scheduler run has claimed months it has not yet published (it is held
on the scheduler's heartbeat row, then let go into the outage). Every month
must complete, and none may come back any other way than by its own message:
no attempt cut short ("lost"), no lease expired, no failed publish, no month
claimed twice.

PostgreSQL restarts mid-run are in ``test_infra_faults.py`` (five of them,
interleaved with five broker restarts, over 60 months: no retry spent).

Afterwards: none stuck, no book twice, the quota ledger equal to what the
sandbox received, the months' counters short of it by at most the calls of the
attempts the outage interrupted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from backfill.db import get_engine
from tests.conftest import ADMIN_URL
from tests.system.reliability.harness import (
    PROVIDERS,
    attempt_outcomes,
    book_checks,
    ledger_calls,
    month_calls,
    print_figures,
    query,
    seed_range,
    wait_settled,
)

pytestmark = [pytest.mark.slow]

FIRST, LAST = (2022, 5), (2023, 12)  # 20 months
# Months whose first attempt fails (each generator answers 503 once, and one try
# is all a generator gets): each then waits out a Celery retry countdown.
FAIL = {m: {"gemini": 1, "xai": 1} for m in ("2023-11", "2023-08", "2023-05", "2023-02", "2022-11")}
ENV = {
    "BACKFILL_BATCH_SIZE": "4",  # months claimed per scheduler run
    "PROVIDER_MAX_TRIES": "1",
    "BACKFILL_RETRY_BACKOFF_SECONDS": "6",  # countdowns of 3..6 s
    "BACKFILL_RETRY_BACKOFF_MAX_SECONDS": "6",
}


# -- the machine's services: looked at, never touched ----------------------------


def _system_postmaster_start() -> dt.datetime:
    engine = create_engine(ADMIN_URL)
    try:
        with engine.connect() as conn:
            started: dt.datetime = conn.scalar(text("SELECT pg_postmaster_start_time()"))
    finally:
        engine.dispose()
    return started


def _system_broker() -> str:
    return os.environ["CELERY_BROKER_URL"]  # the machine's: the private one is never exported


def _declare_probe(name: str) -> None:
    """A transient queue on the machine's broker: a broker restart removes it."""
    from kombu import Connection

    with Connection(_system_broker()) as conn:
        conn.channel().queue_declare(queue=name, durable=False, auto_delete=False)


def _probe_exists(name: str) -> bool:
    from kombu import Connection

    with Connection(_system_broker()) as conn:
        try:
            conn.channel().queue_declare(queue=name, passive=True)
        except conn.channel_errors:  # 404 NOT_FOUND
            return False
    return True


def _delete_probe(name: str) -> None:
    from kombu import Connection

    with contextlib.suppress(Exception), Connection(_system_broker()) as conn:
        conn.channel().queue_delete(name)


@pytest.fixture(scope="module", autouse=True)
def machine_services() -> Iterator[dict[str, Any]]:
    """The machine's PostgreSQL start time and a transient queue on its RabbitMQ,
    taken before the first test of this module."""
    probe = f"backfill-untouched-{uuid.uuid4().hex[:8]}"
    _declare_probe(probe)
    yield {"postmaster_start": _system_postmaster_start(), "probe": probe}
    _delete_probe(probe)


# -- figures ---------------------------------------------------------------------


def _in_flight(url: str) -> dict[str, int]:
    """Months done; attempts running; months waiting out a Celery retry (the
    worker holds their message); months claimed and not yet started (queued)."""
    (row,) = query(
        url,
        """
        SELECT (SELECT count(*) FROM backfill_log WHERE status = 'completed'),
               (SELECT count(*) FROM month_attempts
                 WHERE outcome = 'running' AND worker IS NOT NULL),
               (SELECT count(*) FROM backfill_log
                 WHERE status = 'retry' AND job_id IS NOT NULL AND not_before > now()),
               (SELECT count(*) FROM month_attempts
                 WHERE outcome = 'running' AND worker IS NULL)
        """,
    )
    names = ("completed", "running", "retry_waiting", "claimed_not_started")
    return dict(zip(names, map(int, row), strict=True))


def _count(url: str, where: str) -> int:
    return int(query(url, f"SELECT count(*) FROM month_attempts WHERE {where}")[0][0])


def _claimed_twice(url: str) -> list[str]:
    """Months claimed by the scheduler more than once: their first message did
    not carry them to the end (lost, not published, or their lease ran out)."""
    rows = query(
        url,
        """
        SELECT l.year, l.month, count(DISTINCT a.job_id) FROM backfill_log l
        JOIN month_attempts a ON a.backfill_id = l.id
        GROUP BY l.id HAVING count(DISTINCT a.job_id) > 1
        """,
    )
    return [f"{y:04d}-{m:02d} ({n} claims)" for y, m, n in rows]


def _lost_gaps(url: str, by_month: dict[str, dict[str, int]]) -> list[str]:
    """Months whose generator requests exceed their recorded calls by more than
    their lost attempts (the only attempts that record nothing)."""
    rows = query(
        url,
        """
        SELECT l.year, l.month, l.gemini_calls, l.xai_calls,
               count(a.id) FILTER (WHERE a.outcome = 'lost') AS lost
        FROM backfill_log l LEFT JOIN month_attempts a ON a.backfill_id = l.id GROUP BY l.id
        """,
    )
    wrong = []
    for year, month, gemini, xai, lost in rows:
        seen = by_month.get(f"{year:04d}-{month:02d}", {})
        for provider, recorded in (("gemini", gemini), ("xai", xai)):
            if not 0 <= seen.get(provider, 0) - recorded <= lost:
                wrong.append(f"{year:04d}-{month:02d} {provider}: {seen} vs {recorded}/{lost}")
    return wrong


def _reconnected_after(log: str, since: dt.datetime) -> float | None:
    """Seconds from ``since`` to the worker's first "Connected to amqp" after it."""
    pattern = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO .*Connected to amqp"
    for stamp in re.findall(pattern, log, flags=re.MULTILINE):
        at = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        if at >= since:
            return round((at - since).total_seconds(), 1)
    return None


# -- the run -----------------------------------------------------------------------


def _start_run(stack: Any, env: dict[str, str]) -> tuple[int, Any, Any]:
    """Seed the months, start a worker and beat; wait until a few months are
    done while others run and wait out a retry."""
    stack.sandbox.configure(latency_ms={"gemini": 300, "xai": 300, "isbndb": 5}, fail_months=FAIL)
    months = seed_range(stack.url, FIRST, LAST)
    worker = stack.worker(concurrency=2, **env)
    beat = stack.beat(**env)
    deadline = time.monotonic() + 60
    while True:
        now = _in_flight(stack.url)
        if now["completed"] >= 3 and now["running"] and now["retry_waiting"]:
            return months, worker, beat
        assert time.monotonic() < deadline, f"run too slow: {now}"
        time.sleep(0.05)


def _settle_and_check(
    stack: Any, title: str, notes: dict[str, Any], months: int, beat: Any, timeout: float
) -> dict[str, Any]:
    """Wait for every month, print the figures (``notes`` first), then the
    end-state checks both kinds of outage share."""
    url, sandbox = stack.url, stack.sandbox
    counts = wait_settled(url, timeout=timeout)
    time.sleep(1.0)
    served = sandbox.stats()
    calls = {p: served["calls"][p] for p in PROVIDERS}
    ledger, recorded = ledger_calls(url), month_calls(url)
    books = book_checks(url)
    outcomes = attempt_outcomes(url)
    figures = {
        **notes,
        "months": months,
        "by_status": counts,
        "attempts": outcomes,
        "lease_expired": _count(url, "error LIKE 'lease expired%'"),
        "lost_mid_month": _count(url, "outcome = 'lost'"),
        "publish_failed": _count(url, "error LIKE 'publish failed%'"),
        "claimed_twice": _claimed_twice(url),
        "retries_spent": int(query(url, "SELECT sum(retry_count) FROM backfill_log")[0][0]),
        "duplicates": books["duplicates"],
        "calls_sandbox": calls,
        "calls_ledger": ledger,
        "calls_backfill_log": recorded,
        "beat_alive": beat.alive(),
    }
    print_figures(title, **figures)
    assert counts == {"completed": months}, counts
    assert outcomes.get("running", 0) == 0
    assert books["duplicates"] == 0 and books["single_attempt_mismatches"] == []
    assert books["fewer_stored_than_resolved"] == []
    assert beat.alive(), "beat died with the outage"
    assert _lost_gaps(url, served["by_month"]) == []
    for p in PROVIDERS:
        # a reservation committed just as the outage cut the connection may never be sent
        assert recorded[p] <= calls[p] <= ledger[p] <= calls[p] + 2, (p, calls, ledger)
    assert figures["lease_expired"] == 0, "a month came back by its lease"
    return figures


@contextlib.contextmanager
def _scheduler_held(url: str) -> Iterator[int]:
    """Hold the scheduler's heartbeat row (``control_state`` 'last_schedule'):
    the next scheduler run commits its claims, then waits on the row -- just
    before it publishes them. Yields how many months it claimed; the run goes on
    when the block exits."""
    before = {r[0] for r in query(url, "SELECT id FROM month_attempts")}
    with get_engine(url).connect() as conn:
        tx = conn.begin()
        held = conn.execute(
            text("SELECT 1 FROM control_state WHERE key = 'last_schedule' FOR UPDATE")
        ).all()
        assert held, "no scheduler run recorded yet"
        try:
            deadline = time.monotonic() + 30
            while not _waiting_on_heartbeat(url):
                assert time.monotonic() < deadline, "no scheduler run came to its heartbeat"
                time.sleep(0.1)
            claims = [r for r in query(url, "SELECT id FROM month_attempts") if r[0] not in before]
            yield len(claims)
        finally:
            tx.rollback()


def _waiting_on_heartbeat(url: str) -> int:
    sql = """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
             AND wait_event_type = 'Lock' AND query ILIKE '%control_state%'"""
    return int(query(url, sql)[0][0])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seconds", [5, 15, 60])
def test_rabbitmq_outage_mid_run_loses_nothing(private_stack: Any, seconds: int) -> None:
    """The private node's app stopped, ``seconds`` of outage, started again: every month
    completes, by its own message only."""
    stack, rabbit = private_stack, private_stack.rabbitmq
    # A lease far longer than the outage and the worker's reconnection: a month
    # can only come back by RabbitMQ (re)delivering its message, never by the reaper.
    env = {**ENV, "BACKFILL_LEASE_SECONDS": str(seconds + 60)}
    months, worker, beat = _start_run(stack, env)
    notes: dict[str, Any] = {}
    with _scheduler_held(stack.url) as claimed_by_held_run:
        notes["at the stop"] = {**_in_flight(stack.url), "held_run_claims": claimed_by_held_run}
        notes["queue before"] = rabbit.queue(stack.queue)
        down = time.monotonic()
        rabbit.stop_app()
    # the held scheduler run now publishes into the outage
    try:
        time.sleep(max(0.0, seconds - (time.monotonic() - down)))
    finally:
        starting = dt.datetime.now()
        rabbit.start_app()
    notes["outage"] = f"{time.monotonic() - down:.1f}s (stop_app to start_app done)"
    notes["queue after"] = after = rabbit.queue(stack.queue)
    assert after is not None and after["durable"] == "true", "the queue did not survive"
    title = f"rabbitmq outage {seconds}s"
    figures = _settle_and_check(stack, title, notes, months, beat, timeout=seconds + 120)
    reconnected = _reconnected_after(worker.log(), starting)
    print(f"   {'worker reconnected':<28} {reconnected}s after start_app began")
    assert claimed_by_held_run > 0, "the held scheduler run claimed nothing to publish"
    assert figures["lost_mid_month"] == 0, "an attempt in flight was cut by the outage"
    assert figures["publish_failed"] == 0, "a publish failed in the outage (month deferred)"
    assert figures["claimed_twice"] == [], "a month came back without its message"


# PostgreSQL restarts mid-run: tests/system/reliability/test_infra_faults.py (five of
# them, interleaved with five broker restarts, over 60 months).


@pytest.mark.timeout(120)
def test_the_machines_services_were_not_touched(
    private_stack: Any, machine_services: dict[str, Any]
) -> None:
    """A restart of the private services (the same calls as the tests above)
    leaves the machine's alone: its PostgreSQL was not restarted (same
    postmaster start time as before this module's first test) and its RabbitMQ
    neither (a transient queue declared before is still there)."""
    probe = f"backfill-untouched-{uuid.uuid4().hex[:8]}"
    _declare_probe(probe)
    try:
        started = _system_postmaster_start()
        with private_stack.rabbitmq.stopped(), private_stack.postgres.stopped():
            pass
        assert _system_postmaster_start() == started == machine_services["postmaster_start"]
        assert _probe_exists(probe), "the machine's RabbitMQ lost a transient queue: restarted"
        assert _probe_exists(machine_services["probe"]), "the machine's RabbitMQ was restarted"
    finally:
        _delete_probe(probe)
