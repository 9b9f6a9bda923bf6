"""The month state machine end to end: real worker subprocesses, real RabbitMQ,
real PostgreSQL, the sandbox as the external APIs over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from backfill import months, scheduler
from backfill.db import session_factory
from backfill.models import BackfillLog, Book, MonthAttempt
from tests.conftest import ROOT, purge_queue, subprocess_env
from tests.support.worker_env import FAST

pytestmark = pytest.mark.slow

TRIES = 4  # PROVIDER_MAX_TRIES: tries of one request inside an attempt


def seed(url: str, year: int = 2024) -> None:
    with session_factory(url)() as s, s.begin():
        scheduler.seed_months(s, year, year)


def dispatch(url: str, year: int, month: int) -> str:
    with session_factory(url)() as s:
        info = scheduler.dispatch_month(s, year, month)
    assert info.job_id
    return info.job_id


def row(url: str, year: int, month: int) -> BackfillLog:
    with session_factory(url)() as s:
        return months.get(s, year, month)


def wait_for(
    url: str, year: int, month: int, statuses: set[str], timeout: float = 60
) -> BackfillLog:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = row(url, year, month)
        if r.status in statuses:
            return r
        time.sleep(0.2)
    raise AssertionError(f"{year}-{month:02d} stuck in {r.status}: {r.error_message}")


def attempts(url: str, year: int, month: int) -> list[MonthAttempt]:
    with session_factory(url)() as s:
        r = months.get(s, year, month)
        return scheduler.attempts_of(s, r)


def books_of(url: str, year: int, month: int) -> list[Book]:
    with session_factory(url)() as s:
        return list(
            s.scalars(select(Book).where(Book.found_year == year, Book.found_month == month))
        )


@pytest.fixture
def stack(worker_factory: Callable[..., Any], sandbox: Any, committed_db: str) -> Any:
    """A worker subprocess talking to the sandbox; returns a small handle."""

    class Stack:
        url = committed_db

        def worker(self, **env: str) -> Any:
            return worker_factory(concurrency=2, **{**sandbox.env(), **FAST, **env})

    sandbox.reset()
    return Stack()


def test_pending_to_processing_to_completed(stack: Any, sandbox: Any) -> None:
    stack.worker()
    seed(stack.url)
    with session_factory(stack.url)() as s:
        result = scheduler.schedule(s, batch_size=2, year_range=(2024, 2024))
    assert [m.label for m in result.months] == ["2024-12", "2024-11"]
    assert {row(stack.url, 2024, 12).status, row(stack.url, 2024, 11).status} <= {
        "processing",
        "completed",
    }
    for month in (12, 11):
        done = wait_for(stack.url, 2024, month, {"completed", "failed"})
        assert done.status == "completed", done.error_message
        assert done.completed_at and done.retry_count == 0 and done.lease_expires_at is None
        assert done.books_generated > 0 and done.gemini_calls == 1 and done.isbndb_calls > 0
        expected = round(done.isbns_resolved / done.books_generated * 100, 2)
        assert float(done.resolution_rate) == pytest.approx(expected)
        assert len(books_of(stack.url, 2024, month)) == done.isbns_resolved
        (attempt,) = attempts(stack.url, 2024, month)
        assert attempt.outcome == "completed"
        assert attempt.duration_seconds is not None and attempt.duration_seconds > 0
        assert attempt.prompt_version and attempt.model and attempt.tokens_in > 0
        assert attempt.books_generated == done.books_generated


def test_transient_failures_retry_with_counts_then_complete(stack: Any, sandbox: Any) -> None:
    # Two attempts in which every in-attempt try of both generators fails.
    tries = TRIES
    sandbox.configure(
        fail_months={"2024-05": {"gemini": 2 * tries, "xai": 2 * tries, "status": 503}}
    )
    stack.worker()
    seed(stack.url)
    dispatch(stack.url, 2024, 5)
    done = wait_for(stack.url, 2024, 5, {"completed", "failed"})
    assert done.status == "completed", done.error_message
    assert done.retry_count == 2 and done.last_retry_at is not None
    assert [a.outcome for a in attempts(stack.url, 2024, 5)] == ["retry", "retry", "completed"]
    seen = sandbox.stats()["by_month"]["2024-05"]
    assert seen["gemini"] == 2 * tries + 1 and seen["xai"] == 2 * tries + 1
    # every call accounted for, each in-attempt try included, on the month and its attempts
    assert done.gemini_calls == 2 * tries + 1 and done.xai_calls == 2 * tries + 1
    history = attempts(stack.url, 2024, 5)
    assert [a.gemini_calls for a in history] == [tries, tries, 1]
    assert sum(a.isbndb_calls for a in history) == done.isbndb_calls


def test_five_failures_end_failed_with_the_last_error(stack: Any, sandbox: Any) -> None:
    sandbox.configure(fail_months={"2024-05": {"gemini": 99, "xai": 99, "status": 500}})
    stack.worker()
    seed(stack.url)
    dispatch(stack.url, 2024, 5)
    done = wait_for(stack.url, 2024, 5, {"completed", "failed"})
    assert done.status == "failed"
    assert done.retry_count == 5 and done.error_message
    assert [a.outcome for a in attempts(stack.url, 2024, 5)] == ["retry"] * 4 + ["failed"]
    assert sandbox.stats()["by_month"]["2024-05"]["gemini"] == 5 * TRIES
    time.sleep(1.5)  # no sixth attempt arrives
    assert sandbox.stats()["by_month"]["2024-05"]["gemini"] == 5 * TRIES
    with session_factory(stack.url)() as s:  # excluded from candidates from now on
        labels = [m.label for m in scheduler.schedule(s, 50, dry_run=True).months]
    assert "2024-05" not in labels


def test_completed_month_message_is_refused_without_change(stack: Any, sandbox: Any) -> None:
    w = stack.worker()
    seed(stack.url)
    dispatch(stack.url, 2024, 3)
    done = wait_for(stack.url, 2024, 3, {"completed", "failed"})
    calls = sandbox.stats()["calls"]
    from backfill.broker import CeleryPublisher, MonthMessage

    CeleryPublisher().publish([MonthMessage(done.job_id, 2024, 3, 20)])  # a stale redelivery
    deadline = time.monotonic() + 20
    while "already completed" not in w.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "already completed" in w.log()
    after = row(stack.url, 2024, 3)
    assert (after.status, after.updated_at, after.retry_count) == (
        "completed",
        done.updated_at,
        0,
    )
    assert sandbox.stats()["calls"] == calls


def test_kill_9_mid_month_is_redone_exactly_once(stack: Any, sandbox: Any) -> None:
    sandbox.configure(latency_ms={"gemini": 4000, "xai": 4000})
    w = stack.worker(BACKFILL_LEASE_SECONDS="6")
    seed(stack.url)
    dispatch(stack.url, 2024, 7)
    deadline = time.monotonic() + 20
    while not any(a.worker for a in attempts(stack.url, 2024, 7)):
        assert time.monotonic() < deadline, "the worker never picked the month up"
        time.sleep(0.1)
    time.sleep(0.5)
    w.kill()  # SIGKILL the worker and its pool mid-month
    assert row(stack.url, 2024, 7).status == "processing"
    sandbox.configure(latency_ms={"gemini": 0, "xai": 0})
    stack.worker(BACKFILL_LEASE_SECONDS="6")  # the unacked message comes back
    done = wait_for(stack.url, 2024, 7, {"completed", "failed"}, timeout=90)
    assert done.status == "completed", done.error_message
    history = attempts(stack.url, 2024, 7)
    assert [a.outcome for a in history] == ["lost", "completed"]
    assert done.retry_count == 1  # the lost attempt counts as one failure
    # the killed attempt's calls are on its row too (charged as they were reserved)
    assert sum(a.gemini_calls for a in history) == done.gemini_calls >= 1
    isbns = [b.isbn13 for b in books_of(stack.url, 2024, 7)]
    assert len(isbns) == len(set(isbns)) == done.isbns_resolved


def test_lost_message_is_healed_by_the_lease(stack: Any, sandbox: Any, queue_name: str) -> None:
    seed(stack.url)
    settings_env = {"BACKFILL_LEASE_SECONDS": "5"}
    from backfill.config import load_settings

    settings = load_settings(lease_seconds=5)
    with session_factory(stack.url)() as s:
        scheduler.schedule(s, batch_size=1, year_range=(2024, 2024), settings=settings)
    purge_queue(queue_name)  # the message is lost; the row still says processing
    stack.worker(**settings_env)
    time.sleep(5.5)
    with session_factory(stack.url)() as s:
        result = scheduler.schedule(s, batch_size=1, year_range=(2024, 2024), settings=settings)
    assert result.reaped == ["2024-12:retry"] and [m.label for m in result.months] == ["2024-12"]
    done = wait_for(stack.url, 2024, 12, {"completed", "failed"})
    assert done.status == "completed" and done.retry_count == 1
    assert [a.outcome for a in attempts(stack.url, 2024, 12)] == ["lost", "completed"]


def test_quota_exhaustion_defers_without_spending_a_retry(stack: Any, sandbox: Any) -> None:
    sandbox.configure(quota_exhausted={"isbndb": True})
    # Our plan's day limit near the API's (as an operator sets it): a persistent
    # bare "Limit Exceeded" is then the day's quota, not the per-second limit.
    stack.worker(ISBNDB_DAILY_LIMIT="8")
    seed(stack.url)
    dispatch(stack.url, 2024, 2)
    done = wait_for(stack.url, 2024, 2, {"pending", "retry", "failed", "completed"})
    assert done.status == "pending" and done.retry_count == 0
    assert done.not_before is not None and done.job_id is None
    assert "quota" in (done.error_message or "").lower()
    assert [a.outcome for a in attempts(stack.url, 2024, 2)] == ["deferred"]
    with session_factory(stack.url)() as s:  # nothing is claimed until the reset
        result = scheduler.schedule(s, batch_size=5, year_range=(2024, 2024))
    assert result.triggered == 0 and "isbndb" in result.blocked_until


def test_manual_invocation_from_a_shell(stack: Any, sandbox: Any) -> None:
    stack.worker()
    seed(stack.url)
    env = subprocess_env(**sandbox.env())
    call = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "backfill",
            "call",
            "backfill.process_month",
            "--args=[2024, 6]",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert call.returncode == 0, call.stderr
    done = wait_for(stack.url, 2024, 6, {"completed", "failed"})
    assert done.status == "completed" and done.job_id is not None
    call = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "backfill",
            "call",
            "backfill.schedule",
            '--kwargs={"batch_size": 2, "year_range": [2024, 2024]}',
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert call.returncode == 0, call.stderr
    wait_for(stack.url, 2024, 12, {"completed"})
    wait_for(stack.url, 2024, 11, {"completed"})
    with session_factory(stack.url)() as s:
        done_count = s.scalar(select(func.count()).where(BackfillLog.status == "completed"))
    assert done_count == 3


def test_two_beats_never_dispatch_a_month_twice(stack: Any, sandbox: Any, tmp_path: Any) -> None:
    stack.worker(WORKER_CONCURRENCY="2")
    seed(stack.url)
    env = subprocess_env(**sandbox.env(), **FAST, BACKFILL_BEAT_INTERVAL_SECONDS="0.5")
    beats = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backfill", "beat", "--loglevel", "INFO",
             "--schedule", str(tmp_path / f"beat{i}.db")],
            cwd=ROOT, env=env, stdout=(tmp_path / f"beat{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]  # fmt: skip
    try:
        for month in range(12, 0, -1):
            assert wait_for(stack.url, 2024, month, {"completed", "failed"}).status == "completed"
    finally:
        for beat in beats:
            beat.terminate()
            beat.wait(20)
    with session_factory(stack.url)() as s:
        per_month = s.execute(
            select(BackfillLog.month, func.count(MonthAttempt.id))
            .join(MonthAttempt, MonthAttempt.backfill_id == BackfillLog.id)
            .where(BackfillLog.year == 2024)
            .group_by(BackfillLog.month)
        ).all()
    assert len(per_month) == 12 and {n for _, n in per_month} == {1}
    assert sandbox.stats()["calls"]["gemini"] == 12
