"""The month state machine's edges (issue 13 §2, §4, §5): every mark is committed,
no attempt stays ``running`` once its month moved on, and only the month's own
failures spend its retry budget. Real PostgreSQL; the runner in this process
(the pipeline replaced where the test is about the state machine, not the APIs).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from celery.exceptions import Retry
from sqlalchemy import text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from backfill import months, pipeline, quota, runner, scheduler
from backfill.broker import MonthMessage
from backfill.config import Settings, load_settings
from backfill.db import session_factory
from backfill.exceptions import AttemptInterrupted, MonthClosed, QuotaExhausted
from backfill.models import BackfillLog, MonthAttempt

YEAR, MONTH = 2024, 5


class Accepting:
    """A broker that takes every message (nothing is sent anywhere)."""

    def __init__(self) -> None:
        self.sent: list[MonthMessage] = []

    def publish(self, messages: Iterable[MonthMessage]) -> dict[uuid.UUID, str]:
        self.sent.extend(messages)
        return {}


@pytest.fixture
def db(committed_db: str) -> str:
    with session_factory(committed_db)() as s, s.begin():
        scheduler.seed_months(s, YEAR, YEAR, start_month=MONTH, end_month=MONTH)
    return committed_db


def settings_of(url: str, **overrides: Any) -> Settings:
    return load_settings(database_url=url, **overrides)


def claim(url: str, settings: Settings) -> str:
    """The scheduler claims the month (the message goes nowhere); its job id."""
    with session_factory(url)() as s:
        result = scheduler.schedule(s, batch_size=1, publisher=Accepting(), settings=settings)
    (info,) = result.months
    assert info.job_id
    return info.job_id


def month_row(url: str) -> BackfillLog:
    with session_factory(url)() as s:
        return months.get(s, YEAR, MONTH)


def attempts(url: str) -> list[MonthAttempt]:
    with session_factory(url)() as s:
        return scheduler.attempts_of(s, months.get(s, YEAR, MONTH))


def outcomes(url: str) -> list[str]:
    return [a.outcome for a in attempts(url)]


def set_month(url: str, **values: Any) -> None:
    with session_factory(url)() as s, s.begin():
        s.execute(
            update(BackfillLog)
            .where(BackfillLog.year == YEAR, BackfillLog.month == MONTH)
            .values(**values)
        )


def started_by(url: str, worker: str) -> None:
    """The running attempt was picked up by ``worker`` (which then vanished)."""
    with session_factory(url)() as s, s.begin():
        s.execute(
            update(MonthAttempt).where(MonthAttempt.outcome == "running").values(worker=worker)
        )


def pipeline_doing(
    monkeypatch: pytest.MonkeyPatch, *steps: Callable[[], None]
) -> Callable[[], int]:
    """Replace the pipeline: call ``i`` runs ``steps[i]`` (the last one repeats)."""
    calls = {"n": 0}

    def generate_and_resolve(session: Session, **kwargs: Any) -> pipeline.AttemptStats:
        step = steps[min(calls["n"], len(steps) - 1)]
        calls["n"] += 1
        step()
        return kwargs["stats"]

    monkeypatch.setattr(pipeline, "generate_and_resolve", generate_and_resolve)
    return lambda: calls["n"]


def ok() -> None:
    return None


def database_gone() -> None:
    raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


def boom() -> None:
    raise RuntimeError("boom")


# -- §2: a redelivered message on the last retry commits the "failed" mark


def test_redelivery_on_the_last_retry_commits_failed(db: str) -> None:
    settings = settings_of(db)
    job = claim(db, settings)
    set_month(db, retry_count=settings.max_retries - 1)
    started_by(db, "dead@host")  # delivered once, the worker died mid-month
    outcome = runner.process(YEAR, MONTH, job, worker="w2@host", settings=settings)
    assert outcome.status == "failed"
    row = month_row(db)  # read on a fresh session: committed, not rolled back
    assert (row.status, row.retry_count) == ("failed", settings.max_retries)
    assert row.job_id is None and row.lease_expires_at is None
    assert "worker lost" in (row.error_message or "")
    assert outcomes(db) == ["lost"]  # closed, not left running


def test_begin_raises_month_closed_to_be_committed(session: Session) -> None:
    settings = load_settings()
    scheduler.seed_months(session, YEAR, YEAR, start_month=MONTH, end_month=MONTH)
    scheduler.schedule(session, batch_size=1, publisher=Accepting(), settings=settings)
    row = months.get(session, YEAR, MONTH)
    row.retry_count = settings.max_retries - 1
    session.execute(update(MonthAttempt).values(worker="dead@host"))
    with pytest.raises(MonthClosed) as info:
        months.begin(session, YEAR, MONTH, row.job_id, "w2", settings)
    assert info.value.status == "failed"


# -- §2: a lost month retried or claimed by hand closes its old attempt


def lose_the_month(url: str, settings: Settings) -> str:
    """Claimed, picked up by a worker that died, lease expired: a lost month."""
    job = claim(url, settings)
    started_by(url, "dead@host")
    set_month(url, lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    return job


def test_operator_retry_of_a_lost_month_closes_its_attempt(db: str) -> None:
    lose_the_month(db, settings_of(db))
    with session_factory(db)() as s, s.begin():
        scheduler.retry_month(s, YEAR, MONTH)
    row = month_row(db)
    assert (row.status, row.retry_count, row.job_id) == ("pending", 0, None)
    assert outcomes(db) == ["lost"]


def test_by_hand_run_of_a_lost_month_closes_its_attempt(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(db)
    lost = lose_the_month(db, settings)
    pipeline_doing(monkeypatch, ok)
    outcome = runner.process(YEAR, MONTH, None, worker="w2@host", settings=settings)
    assert outcome.status == "completed"
    history = attempts(db)
    assert [a.outcome for a in history] == ["lost", "completed"]
    assert str(history[0].job_id) == lost and str(history[1].job_id) != lost


def test_dispatching_a_lost_month_by_hand_closes_its_attempt(db: str) -> None:
    settings = settings_of(db)
    lost = lose_the_month(db, settings)
    with session_factory(db)() as s:
        info = scheduler.dispatch_month(s, YEAR, MONTH, publisher=Accepting(), settings=settings)
    assert info.status == "processing" and info.job_id != lost
    assert outcomes(db) == ["lost", "running"]  # the new claim's attempt only


# -- §5: infrastructure faults spend no retry; a worker lost mid-month spends one


def test_database_gone_mid_attempt_spends_no_retry(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(db)
    job = claim(db, settings)
    pipeline_doing(monkeypatch, database_gone, ok)
    with pytest.raises(AttemptInterrupted) as info:
        runner.process(YEAR, MONTH, job, worker="w@host", settings=settings)
    assert info.value.job_id == job and info.value.attempt_id == attempts(db)[0].id
    row = month_row(db)
    assert (row.status, row.retry_count) == ("processing", 0)  # nothing recorded against it
    # the task's retry names the attempt it gave up on
    outcome = runner.process(
        YEAR, MONTH, job, worker="w@host", settings=settings,
        interrupted_attempt=info.value.attempt_id,
    )  # fmt: skip
    assert outcome.status == "completed"
    assert month_row(db).retry_count == 0
    history = attempts(db)
    assert [a.outcome for a in history] == ["deferred", "completed"]
    assert "database went away" in (history[0].error or "")


def test_six_database_restarts_in_a_row_never_fail_the_month(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(db)
    job = claim(db, settings)
    pipeline_doing(monkeypatch, *([database_gone] * 6), ok)
    interrupted = None
    for _ in range(6):
        with pytest.raises(AttemptInterrupted) as info:
            runner.process(
                YEAR, MONTH, job, worker="w@host", settings=settings,
                interrupted_attempt=interrupted,
            )  # fmt: skip
        interrupted = info.value.attempt_id
        assert month_row(db).status == "processing"
    outcome = runner.process(
        YEAR, MONTH, job, worker="w@host", settings=settings, interrupted_attempt=interrupted
    )
    assert outcome.status == "completed"
    assert month_row(db).retry_count == 0
    assert outcomes(db) == ["deferred"] * 6 + ["completed"]


def test_a_worker_killed_after_an_interrupted_retry_still_counts_once(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry (interrupted_attempt=A) began attempt B, then its worker was
    killed: RabbitMQ redelivers the same message, which finds B running -- a lost
    worker, not the interruption it names."""
    settings = settings_of(db)
    job = claim(db, settings)
    pipeline_doing(monkeypatch, database_gone, ok)
    with pytest.raises(AttemptInterrupted) as info:
        runner.process(YEAR, MONTH, job, worker="w@host", settings=settings)
    first = info.value.attempt_id
    with session_factory(db)() as s, s.begin():  # the retry begins B and is killed
        months.begin(s, YEAR, MONTH, uuid.UUID(job), "dead@host", settings, first)
    outcome = runner.process(
        YEAR, MONTH, job, worker="w2@host", settings=settings, interrupted_attempt=first
    )
    assert outcome.status == "completed"
    assert outcomes(db) == ["deferred", "lost", "completed"]
    assert month_row(db).retry_count == 1


def test_a_kill_9_redelivery_counts_one_failure(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of(db)
    job = claim(db, settings)
    started_by(db, "dead@host")
    pipeline_doing(monkeypatch, ok)
    assert runner.process(YEAR, MONTH, job, worker="w2@host", settings=settings).status == (
        "completed"
    )
    assert outcomes(db) == ["lost", "completed"] and month_row(db).retry_count == 1


def test_a_month_run_celery_cancelled_on_broker_loss_spends_no_retry(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """worker_cancel_long_running_tasks_on_connection_loss: Celery terminates the
    run and calls the task's on_retry in the (alive) main process, einfo None."""
    from backfill.tasks import process_month

    settings = settings_of(db)
    job = claim(db, settings)
    started_by(db, "alive@host")
    kwargs = {"year": YEAR, "month": MONTH, "job_id": job, "batch_size": 20}
    process_month.on_retry(Retry(message="cancelled by Celery"), "task-id", (), kwargs, None)
    assert outcomes(db) == ["deferred"]
    assert month_row(db).status == "processing"  # the claim waits for its redelivery
    pipeline_doing(monkeypatch, ok)
    outcome = runner.process(YEAR, MONTH, job, worker="alive@host", settings=settings)
    assert outcome.status == "completed"
    assert outcomes(db) == ["deferred", "completed"] and month_row(db).retry_count == 0


def test_an_ordinary_retry_hook_changes_nothing(db: str) -> None:
    from backfill.tasks import process_month

    settings = settings_of(db)
    job = claim(db, settings)
    started_by(db, "w@host")
    kwargs = {"year": YEAR, "month": MONTH, "job_id": job}
    process_month.on_retry(Retry(message="x"), "task-id", (), kwargs, object())  # einfo set
    assert outcomes(db) == ["running"]


def test_the_months_own_failure_still_spends_a_retry(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(db)
    job = claim(db, settings)
    pipeline_doing(monkeypatch, boom)
    outcome = runner.process(YEAR, MONTH, job, worker="w@host", settings=settings)
    assert outcome.status == "retry" and month_row(db).retry_count == 1
    assert outcomes(db) == ["retry"]


def test_infrastructure_error_is_recognised_through_its_causes() -> None:
    try:
        try:
            database_gone()
        except OperationalError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert runner.infrastructure_error(wrapped)
    assert not runner.infrastructure_error(RuntimeError("boom"))


# -- §5: every call is charged to the attempt too, in the ledger's transaction


def test_charging_counts_each_call_on_the_month_and_its_attempt(db: str) -> None:
    settings = settings_of(db, openlibrary_rate_per_second=50, isbndb_rate_per_second=50)
    claim(db, settings)
    (attempt,) = attempts(db)
    row = month_row(db)
    with quota.charging(row.id, attempt.id):
        quota.reserve("isbndb", settings)
        quota.reserve("isbndb", settings)
        quota.reserve("openlibrary", settings)
    with quota.charging(row.id):  # no attempt (re-resolution): the month only
        quota.reserve("isbndb", settings)
    (attempt,) = attempts(db)
    row = month_row(db)
    assert (attempt.isbndb_calls, attempt.openlibrary_calls) == (2, 1)
    assert (row.isbndb_calls, row.openlibrary_calls) == (3, 1)


def test_completing_keeps_the_charged_calls_of_the_attempt(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(db, isbndb_rate_per_second=50)
    job = claim(db, settings)

    def two_isbndb_calls() -> None:
        quota.reserve("isbndb", settings)
        quota.reserve("isbndb", settings)

    pipeline_doing(monkeypatch, two_isbndb_calls)
    runner.process(YEAR, MONTH, job, worker="w@host", settings=settings)
    (attempt,) = attempts(db)
    assert attempt.outcome == "completed" and attempt.isbndb_calls == 2
    assert month_row(db).isbndb_calls == 2


# -- §5: a deferral says whose word closed the day


@pytest.fixture
def fresh_ledger(db: str) -> Iterator[str]:
    with session_factory(db)() as s, s.begin():
        s.execute(text("DELETE FROM quota_usage"))
    yield db


def test_a_day_the_api_closed_says_so(fresh_ledger: str) -> None:
    settings = settings_of(fresh_ledger, isbndb_rate_per_second=50, quota_probe_minutes=0)
    quota.reserve("isbndb", settings)
    quota.mark_exhausted("isbndb", settings)
    with pytest.raises(QuotaExhausted) as info:
        quota.reserve("isbndb", settings)
    message = str(info.value)
    assert "the API said so" in message and f"1 of {settings.isbndb_daily_limit}" in message
    assert "global ledger" not in message


def test_a_day_our_ledger_closed_says_so(fresh_ledger: str) -> None:
    settings = settings_of(fresh_ledger, isbndb_rate_per_second=50, isbndb_daily_limit=2)
    quota.reserve("isbndb", settings)
    quota.reserve("isbndb", settings)
    with pytest.raises(QuotaExhausted) as info:
        quota.reserve("isbndb", settings)
    assert "daily budget of 2 spent (global ledger)" in str(info.value)
    assert "API" not in str(info.value)


# -- §4: a dry run while paused or blocked lists nothing and says why (CLI and API)


def test_dry_run_while_paused_says_why_in_the_cli_and_the_api(db: str) -> None:
    from click.testing import CliRunner

    from backfill.cli import cli
    from backfill.web import create_app
    from tests.support.webutil import AUTH

    with session_factory(db)() as s, s.begin():
        scheduler.set_paused(s, True)
    out = CliRunner().invoke(cli, ["schedule", "--dry-run"], catch_exceptions=False).output
    assert "dry run: 0 months would be claimed (paused)" in out
    app = create_app({"TESTING": True})
    body = (
        app.test_client()
        .post("/api/internal/schedule-backfill", json={"dry_run": True}, headers=AUTH)
        .json
    )
    assert body["paused"] is True and body["months"] == [] and body["months_selected"] == 0
    assert "execution_summary" not in body


def test_dry_run_while_blocked_says_why_in_the_cli_and_the_api(db: str) -> None:
    from click.testing import CliRunner

    from backfill.cli import cli
    from backfill.web import create_app
    from tests.support.webutil import AUTH

    quota.mark_exhausted("isbndb", settings_of(db))
    try:
        out = CliRunner().invoke(cli, ["schedule", "--dry-run"], catch_exceptions=False).output
        assert "dry run: 0 months would be claimed (quota spent: isbndb until " in out
        out = CliRunner().invoke(cli, ["schedule"], catch_exceptions=False).output
        assert "triggered 0, skipped 1, errors 0 (quota spent: isbndb until " in out
        app = create_app({"TESTING": True})
        resp = app.test_client().post(
            "/api/internal/schedule-backfill",
            json={"batch_size": 5, "year_range": {"start": YEAR, "end": YEAR}},
            headers=AUTH,
        )
        body = resp.json
        assert body["months"] == [] and "isbndb" in body["blocked_until"]
        assert body["execution_summary"] == {"triggered": 0, "skipped": 1, "errors": 0}
    finally:
        with session_factory(db)() as s, s.begin():
            s.execute(text("DELETE FROM quota_usage"))


def test_the_task_retries_an_interrupted_attempt_without_spending_a_retry(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task's own wiring (run eagerly: its retry runs at once, in this process)."""
    from backfill import tasks

    settings = settings_of(db)
    job = claim(db, settings)
    monkeypatch.setattr(tasks, "DB_RETRY_SECONDS", 0)
    ran = pipeline_doing(monkeypatch, database_gone, database_gone, ok)
    result = tasks.process_month.apply(
        kwargs={"year": YEAR, "month": MONTH, "job_id": job, "batch_size": 20}
    )
    assert result.get() == "completed" and ran() == 3
    assert outcomes(db) == ["deferred", "deferred", "completed"]
    row = month_row(db)
    assert (row.status, row.retry_count) == ("completed", 0)
