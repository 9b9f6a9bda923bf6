"""Run one month end to end, independent of Celery.

:func:`process` is what the ``backfill.process_month`` task calls: it takes the
month's advisory lock (so no two deliveries ever work on a month at once),
starts an attempt, runs the pipeline, and records the outcome. It returns an
:class:`Outcome` that the task maps to an acknowledgement or a Celery retry.

A database that goes away mid-attempt is not the month's failure: nothing is
recorded against it, and :class:`~backfill.exceptions.AttemptInterrupted` tells
the task which attempt its retry closes as ``deferred``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from backfill import handoff, months, pipeline, quota
from backfill.config import Settings, get_settings
from backfill.db import db_now, get_engine, session_factory
from backfill.exceptions import (
    AttemptInterrupted,
    MonthClosed,
    MonthNotClaimable,
    MonthNotFound,
    QuotaExhausted,
)
from backfill.logs import bind, log_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. ``status`` is the month's status afterwards, or
    ``refused`` (not ours; nothing changed) or ``busy`` (another delivery holds it)."""

    status: str
    message: str = ""
    countdown: float = 0.0
    stats: pipeline.AttemptStats | None = None
    job_id: str | None = None


def backoff(failures: int, settings: Settings) -> float:
    """Exponential backoff with jitter, capped well below RabbitMQ's consumer timeout."""
    base = settings.retry_backoff_seconds * (2 ** max(failures - 1, 0))
    capped = min(base, settings.retry_backoff_max_seconds)
    return capped * random.uniform(0.5, 1.0)


def _error_text(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:2000]


def infrastructure_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the database being unreachable -- a
    fault of the infrastructure, never of the month being worked on."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OperationalError | InterfaceError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def _keep_partial_work(session: Session) -> None:
    """Commit books and lookups stored before the failure (idempotent upserts)
    so a retry does not pay for the same API calls again."""
    try:
        session.commit()
    except Exception:
        session.rollback()


def _rollback_quietly(session: Session) -> None:
    with contextlib.suppress(Exception):  # the connection is gone already
        session.rollback()


class _LeaseKeeper:
    """Called by the pipeline between steps: renews the month's lease (in the
    attempt's database) at most every lease/3 seconds."""

    def __init__(self, claim: months.Claim, settings: Settings) -> None:
        self.claim = claim
        self.settings = settings
        self.last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last < self.settings.lease_seconds / 3:
            return
        with session_factory(self.settings.database_url)() as s, s.begin():
            if not months.renew_lease(s, self.claim, self.settings):
                log.warning(
                    "lease of %s was taken back; finishing under the advisory lock",
                    self.claim.label,
                )
        self.last = time.monotonic()


def process(
    year: int,
    month: int,
    job_id: str | uuid.UUID | None = None,
    batch_size: int | None = None,
    worker: str | None = None,
    settings: Settings | None = None,
    interrupted_attempt: int | None = None,
) -> Outcome:
    """Process one month; never raises for the month's own failures.

    Raises :class:`AttemptInterrupted` when the database went away after the
    attempt was begun, and SQLAlchemy's error when it was unreachable before;
    ``interrupted_attempt`` is the attempt an earlier delivery of this job gave
    up on that way (see :func:`backfill.months.begin`)."""
    settings = settings or get_settings()
    job = uuid.UUID(str(job_id)) if job_id else None
    label = f"{year:04d}-{month:02d}"
    with (
        log_context(month=label, job_id=str(job) if job else None),
        get_engine(settings.database_url).connect() as conn,
    ):
        session = Session(bind=conn, expire_on_commit=False)
        try:
            row = months.get(session, year, month)
            session.commit()
        except MonthNotFound as exc:
            session.rollback()
            log.warning("refused: %s", exc)
            return Outcome("refused", str(exc))
        # Keep the id as a plain int: when the database goes away mid-attempt the
        # session is rolled back and closed, and reading ``row.id`` from the
        # expired, detached row would raise DetachedInstanceError, hiding the
        # OperationalError the task retries on.
        row_id = row.id
        if not months.try_lock(conn, row_id):
            log.info("another delivery is processing %s right now", label)
            return Outcome("busy", f"{label} is being processed elsewhere")
        try:
            return _attempt(
                session, year, month, job, batch_size, worker, settings, interrupted_attempt
            )
        finally:
            session.close()
            _unlock(conn, row_id)


def _unlock(conn: Connection, row_id: int) -> None:
    """Release the month's lock; on a connection the database dropped it is gone
    already, and the error must not hide the one being raised."""
    try:
        months.unlock(conn, row_id)
    except DBAPIError as exc:
        log.warning("could not release the month's lock (%s); closing the connection", exc)
        conn.invalidate()  # the session-level lock dies with the connection


def _attempt(
    session: Session,
    year: int,
    month: int,
    job: uuid.UUID | None,
    batch_size: int | None,
    worker: str | None,
    settings: Settings,
    interrupted_attempt: int | None,
) -> Outcome:
    begun: months.Claim | None = None
    try:
        begun = months.begin(session, year, month, job, worker, settings, interrupted_attempt)
        session.commit()
    except MonthClosed as exc:
        session.commit()  # the refusal changed the month (e.g. failed): keep it
        log.warning("refused: %s", exc)
        return Outcome(exc.status, str(exc))
    except MonthNotClaimable as exc:
        session.rollback()
        months.refuse_stale(session, year, month, job)
        session.commit()
        log.warning("refused: %s", exc)
        return Outcome("refused", str(exc))
    except Exception as exc:
        if begun is not None and infrastructure_error(exc):
            # The commit may or may not have landed: name the attempt either way.
            raise AttemptInterrupted(str(begun.job_id), begun.attempt_id, exc) from exc
        raise
    claim = begun
    try:
        return _run(session, claim, year, month, batch_size, settings)
    except Exception as exc:
        if infrastructure_error(exc):
            log.warning("attempt %d interrupted, database unreachable: %s", claim.attempt, exc)
            raise AttemptInterrupted(str(claim.job_id), claim.attempt_id, exc) from exc
        raise


def _run(
    session: Session,
    claim: months.Claim,
    year: int,
    month: int,
    batch_size: int | None,
    settings: Settings,
) -> Outcome:
    bind(job_id=str(claim.job_id), attempt=claim.attempt)
    log.info("attempt %d started (%d failures so far)", claim.attempt, claim.retry_count)
    stats = pipeline.AttemptStats()
    started = time.monotonic()
    try:
        with quota.charging(claim.row_id, claim.attempt_id):
            pipeline.generate_and_resolve(
                session,
                year=year,
                month=month,
                prompt_variant=claim.prompt_variant,
                batch_size=batch_size or claim.batch_size,
                stats=stats,
                settings=settings,
                renew_lease=_LeaseKeeper(claim, settings),
                # Each generator answer and resolution answer is committed as it
                # arrives: a later failure in the attempt cannot roll it back.
                checkpoint=session.commit,
                attempt_id=claim.attempt_id,
            )
    except QuotaExhausted as exc:
        _keep_partial_work(session)
        months.defer(session, claim, exc, stats)
        session.commit()
        log.warning("deferred until %s: %s", exc.resets_at.isoformat(), exc)
        return Outcome("deferred", str(exc), stats=stats)
    except Exception as exc:
        if infrastructure_error(exc):
            _rollback_quietly(session)
            raise  # not the month's failure: nothing is recorded against it
        _keep_partial_work(session)
        countdown = backoff(claim.retry_count + 1, settings)
        retry_at = db_now(session) + dt.timedelta(seconds=countdown)
        status = months.fail_attempt(session, claim, _error_text(exc), stats, settings, retry_at)
        session.commit()
        log.warning("attempt %d failed (%s): %s", claim.attempt, status, _error_text(exc))
        countdown = countdown if status == "retry" else 0
        return Outcome(status, _error_text(exc), countdown, stats, str(claim.job_id))
    months.complete(session, claim, stats)
    session.commit()
    log.info(
        "completed in %.1fs: %d books, %d resolved, calls gemini=%d xai=%d isbndb=%d",
        time.monotonic() - started,
        stats.books_generated,
        stats.isbns_resolved,
        stats.gemini_calls,
        stats.xai_calls,
        stats.isbndb_calls,
    )
    # After the completion commit: a hand-off that fails (broker down) is logged
    # and left to the scheduler's sweep; the month stays completed.
    handoff.hand_off_quietly(session, claim.row_id, settings=settings)
    return Outcome("completed", stats=stats)
