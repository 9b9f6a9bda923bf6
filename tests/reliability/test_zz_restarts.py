"""Restarts of the services themselves, in the middle of a run: RabbitMQ, then PostgreSQL.

Last in file order on purpose: a restart disturbs every other test using the
service at that moment. Each outage is a few seconds, and the service is
always brought back in a ``finally``.

The run: 60 months, one worker (concurrency 2) and beat as subprocesses. The
outage starts once a fifth of the months are done. Afterwards every month must
be ``completed`` with no manual action, none stuck, no book twice, the quota
ledger equal to what the sandbox received, and the months' counters short of
it by at most the calls of attempts the outage interrupted (an interrupted
attempt's transaction dies with it, as in the killed-worker test).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import (
    PROVIDERS,
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

OUTAGE_SECONDS = 4
# A lease longer than the whole outage: a month can then only come back by
# RabbitMQ redelivering its message, never by the reaper, so an attempt
# closed as "lease expired" would mean a message was lost.
ENV = {"BACKFILL_LEASE_SECONDS": "60", "BACKFILL_BATCH_SIZE": "8"}


def _run(cmd: list[str], timeout: float = 60) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stdout}{done.stderr}"
    return done.stdout


def _rabbit_ready(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    _run(["rabbitmqctl", "await_startup"], timeout)
    while time.monotonic() < deadline:
        check = subprocess.run(
            ["rabbitmq-diagnostics", "-q", "check_port_connectivity"],
            capture_output=True,
            timeout=timeout,
        )
        if check.returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError("RabbitMQ did not come back")


def _queue_info(name: str) -> tuple[bool, int] | None:
    """(durable, messages) of queue ``name``, or None when it does not exist."""
    out = _run(["rabbitmqctl", "-q", "list_queues", "name", "durable", "messages"])
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == name:
            return parts[1] == "true", int(parts[2])
    return None


@contextlib.contextmanager
def rabbitmq_stopped() -> Iterator[None]:
    """The RabbitMQ application stopped (the node keeps running), started again on exit."""
    _run(["rabbitmqctl", "stop_app"])
    try:
        yield
    finally:
        _run(["rabbitmqctl", "start_app"])
        _rabbit_ready()


def _pg_cluster() -> list[str]:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


@contextlib.contextmanager
def postgresql_stopped() -> Iterator[None]:
    """PostgreSQL stopped (fast: open connections are cut), started again on exit."""
    _run([*_pg_cluster(), "stop", "-m", "fast"])
    try:
        yield
    finally:
        _run([*_pg_cluster(), "start"])


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


Outage = Callable[[], contextlib.AbstractContextManager[None]]


def _run_through(
    stack: Any, title: str, outage: Outage, notes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run 60 months, take the service away once a fifth are done, check the end
    state; ``notes`` (filled by ``outage``) are printed with the figures."""
    sandbox, url = stack.sandbox, stack.url
    sandbox.configure(latency_ms={"gemini": 200, "xai": 200, "isbndb": 5})
    months = seed_range(url, (2019, 1), (2023, 12))
    stack.worker(concurrency=2, **ENV)
    started = time.monotonic()
    beat = stack.beat(**ENV)
    deadline = time.monotonic() + 90
    while status_counts(url).get("completed", 0) < months // 5:
        assert time.monotonic() < deadline, f"run too slow: {status_counts(url)}"
        time.sleep(0.2)
    done_before = status_counts(url).get("completed", 0)
    down = time.monotonic()
    with outage():
        time.sleep(OUTAGE_SECONDS)
    outage_seconds = time.monotonic() - down
    counts = wait_settled(url, timeout=150)
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    served = sandbox.stats()
    calls = {p: served["calls"][p] for p in PROVIDERS}
    ledger, recorded = ledger_calls(url), month_calls(url)
    books = book_checks(url)
    outcomes = attempt_outcomes(url)
    reaped = query(url, "SELECT count(*) FROM month_attempts WHERE error LIKE 'lease expired%'")
    figures = {
        "months": months,
        "outage": f"{outage_seconds:.1f}s, after {done_before} months completed",
        **(notes or {}),
        "by_status": counts,
        "stuck": counts.get("processing", 0),
        "duplicates": books["duplicates"],
        "attempts": outcomes,
        "retries_spent": int(query(url, "SELECT sum(retry_count) FROM backfill_log")[0][0]),
        "reaped_by_lease": int(reaped[0][0]),
        "calls_sandbox": calls,
        "calls_ledger": ledger,
        "calls_backfill_log": recorded,
        "beat_alive": beat.alive(),
        "seconds": round(elapsed, 1),
    }
    print_figures(title, **figures)
    assert counts == {"completed": months}, counts
    assert outcomes.get("running", 0) == 0
    assert books["duplicates"] == 0 and books["single_attempt_mismatches"] == []
    assert books["fewer_stored_than_resolved"] == []
    assert figures["reaped_by_lease"] == 0, "a month came back by its lease: a message was lost"
    assert beat.alive(), "beat died with the outage"
    assert _lost_gaps(url, served["by_month"]) == []
    for p in PROVIDERS:
        # a reservation committed just as the outage cut the connection may never be sent
        assert recorded[p] <= calls[p] <= ledger[p] <= calls[p] + 2, (p, calls, ledger)
    return figures


def test_rabbitmq_restart_mid_run_loses_nothing(stack: Any, queue_name: str) -> None:
    """``rabbitmqctl stop_app`` / ``start_app`` while months are queued and running:
    the queue is durable and its messages persistent, so what was queued (and
    what the worker held unacknowledged) is still there after the restart."""

    notes: dict[str, Any] = {}

    @contextlib.contextmanager
    def outage() -> Iterator[None]:
        notes["queue_before (durable, n)"] = _queue_info(queue_name)
        with rabbitmq_stopped():
            yield
        notes["queue_after (durable, n)"] = after = _queue_info(queue_name)
        assert after is not None and after[0], "the queue did not survive the restart"

    _run_through(stack, "rabbitmq restart", outage, notes)


def test_postgresql_restart_mid_run_recovers_without_manual_action(stack: Any) -> None:
    """PostgreSQL stopped (fast shutdown cuts every connection) and started again:
    tasks that hit the outage retry (``DB_RETRY_SECONDS``), beat's schedule runs
    are skipped until the database answers, pooled connections are re-checked
    (``pool_pre_ping``)."""
    _run_through(stack, "postgresql restart", postgresql_stopped)
