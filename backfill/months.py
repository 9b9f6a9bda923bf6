"""One month's state machine: claim, begin, complete, fail, defer, reap.

    pending/retry --claim--> processing --> completed
                                        --> retry  (failures < max; Celery retries it)
                                        --> failed (failures = max; last error kept)
                                        --> pending/retry + not_before
                                            (quota spent, or the publish failed:
                                             deferred, no retry spent)
Every transition is one UPDATE on a locked row plus a ``month_attempts`` row,
so the history tells what happened to every attempt; no attempt stays
``running`` once its month moved on. Functions take a session and do not
commit; one that refuses *and* changes the month raises :class:`MonthClosed`,
which the caller commits.

Only the month's own failures spend its budget (``retry_count``): a failed
attempt, or a worker that died mid-month (a message redelivered after ``kill
-9``, or a lease that expired). An infrastructure fault is not the month's: a
failed publish, and an attempt its own delivery gave up on because the
database went away (the task retries with ``interrupted_attempt`` and
:func:`begin` closes that attempt ``deferred``), or that Celery terminated
after losing the broker (:func:`close_cancelled`), spend nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, func, or_, select, text, update
from sqlalchemy.orm import Session

from backfill.attempts import AttemptStats
from backfill.config import Settings, get_settings
from backfill.db import db_now
from backfill.exceptions import MonthClosed, MonthNotClaimable, MonthNotFound, QuotaExhausted
from backfill.models import BackfillLog, MonthAttempt

# Namespace of the advisory locks that say "a worker is processing this month".
LOCK_NAMESPACE = 7_301
# A month whose message the broker did not take waits at most this long (and at
# least two beats) before a scheduler run claims it again.
PUBLISH_RETRY_MAX_SECONDS = 60.0
LOST_ERROR = "lease expired: the worker processing it was lost"


@dataclass(frozen=True)
class Claim:
    """A month this worker now owns for one attempt."""

    row_id: int
    year: int
    month: int
    job_id: uuid.UUID
    attempt_id: int
    attempt: int
    retry_count: int
    prompt_variant: str
    batch_size: int

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def get(session: Session, year: int, month: int, lock: bool = False) -> BackfillLog:
    query = select(BackfillLog).where(BackfillLog.year == year, BackfillLog.month == month)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise MonthNotFound(f"{year:04d}-{month:02d} is not in backfill_log (seed it first)")
    return row


def _live_lease(row: BackfillLog, now: dt.datetime) -> bool:
    return (
        row.status == "processing"
        and row.lease_expires_at is not None
        and row.lease_expires_at > now
    )


def lock_for_manual_claim(session: Session, year: int, month: int) -> BackfillLog:
    """Lock a month an operator asked for; refuse completed or live-leased months."""
    row = get(session, year, month, lock=True)
    now = db_now(session)
    if row.status == "completed":
        raise MonthNotClaimable(f"{row.label} is already completed")
    if _live_lease(row, now):
        raise MonthNotClaimable(
            f"{row.label} is being processed by job {row.job_id} until {row.lease_expires_at}"
        )
    return row


def out_of_budget(row: BackfillLog, settings: Settings) -> bool:
    """No retry left: ``failed``, or a ``pending``/``retry`` month whose failures
    reach ``BACKFILL_MAX_RETRIES`` (the limit was lowered since)."""
    return row.status == "failed" or (row.retry_count or 0) >= settings.max_retries


def claim(
    session: Session,
    row: BackfillLog,
    settings: Settings,
    now: dt.datetime,
    reset_budget: bool = False,
    job_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Mark a locked row ``processing`` under a fresh job id and lease (the
    caller closes the attempts of a lost claim first: :func:`take_back_lost`).
    As the original system does: a month taken from ``retry`` gets
    ``last_retry_at = now``, and its last error is cleared (its attempts keep it)."""
    job_id = job_id or uuid.uuid4()
    if row.status == "retry":
        row.last_retry_at = now
    row.error_message = None
    if reset_budget:
        row.retry_count = 0
    row.status = "processing"
    row.started_at = now
    row.completed_at = None
    row.not_before = None
    row.job_id = job_id
    row.lease_expires_at = now + dt.timedelta(seconds=settings.lease_seconds)
    row.attempts = (row.attempts or 0) + 1
    # no flush here: a scheduler claiming 50 months sends them in one flush
    session.add(MonthAttempt(backfill_id=row.id, job_id=job_id, attempt=row.attempts))
    return job_id


def _close_attempts(
    session: Session, row_id: int, job_id: uuid.UUID | None, outcome: str, error: str | None
) -> None:
    """Close the attempts of ``job_id`` still marked running."""
    if job_id is None:
        return
    session.execute(
        update(MonthAttempt)
        .where(
            MonthAttempt.backfill_id == row_id,
            MonthAttempt.job_id == job_id,
            MonthAttempt.outcome == "running",
        )
        .values(outcome=outcome, error=error, finished_at=func.clock_timestamp())
    )


def _count_failure(
    row: BackfillLog,
    error: str,
    settings: Settings,
    now: dt.datetime,
    retry_at: dt.datetime | None,
) -> str:
    """One failed attempt: the retry budget shrinks, the error is kept."""
    row.retry_count = (row.retry_count or 0) + 1
    row.last_retry_at = now
    row.error_message = error[:2000]
    row.status = "retry" if row.retry_count < settings.max_retries else "failed"
    if row.status == "retry" and retry_at is not None:
        # A Celery retry of this job is on its way: keep the claim so no
        # scheduler run dispatches the month a second time meanwhile.
        row.not_before = retry_at
        row.lease_expires_at = retry_at + dt.timedelta(seconds=settings.lease_seconds)
    else:
        row.job_id = None
        row.lease_expires_at = None
        row.not_before = None
    return row.status


def take_back_lost(session: Session, row: BackfillLog, settings: Settings, now: dt.datetime) -> str:
    """A locked ``processing`` row whose lease ran out and whose worker is gone:
    close its running attempts as ``lost`` and spend one retry; returns the
    month's status."""
    job_id = row.job_id  # _count_failure clears it
    _count_failure(row, LOST_ERROR, settings, now, None)
    _close_attempts(session, row.id, job_id, "lost", LOST_ERROR)
    return row.status


def defer_publish(
    session: Session,
    row: BackfillLog,
    job_id: uuid.UUID,
    error: str,
    settings: Settings,
) -> str:
    """A claim whose message the broker did not take: the broker's fault, not the
    month's. Back to ``pending``/``retry`` for a short while (no retry spent), its
    attempt closed ``deferred`` with the error; returns the month's status."""
    session.refresh(row, with_for_update=True)
    if row.job_id != job_id:
        return row.status
    wait = min(max(2 * settings.beat_interval_seconds, 1.0), PUBLISH_RETRY_MAX_SECONDS)
    row.status = "retry" if row.retry_count else "pending"
    row.not_before = db_now(session) + dt.timedelta(seconds=wait)
    row.job_id = None
    row.lease_expires_at = None
    row.error_message = error[:2000]
    _close_attempts(session, row.id, job_id, "deferred", error[:2000])
    session.flush()
    return row.status


def settle_spent(session: Session, settings: Settings, now: dt.datetime) -> list[str]:
    """Mark ``failed`` the ``pending``/``retry`` months with no retry left (after
    ``BACKFILL_MAX_RETRIES`` was lowered) that nothing holds: they are failed in
    all but name, and only ``force_retry`` or an operator's retry (a fresh
    budget) takes them again."""
    rows = session.scalars(
        select(BackfillLog)
        .where(
            BackfillLog.status.in_(("pending", "retry")),
            BackfillLog.retry_count >= settings.max_retries,
            BackfillLog.retry_count > 0,
            or_(BackfillLog.lease_expires_at.is_(None), BackfillLog.lease_expires_at <= now),
        )
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.status = "failed"
        row.job_id = None
        row.lease_expires_at = None
        row.not_before = None
        note = f"retry budget spent ({row.retry_count} of {settings.max_retries})"
        row.error_message = f"{row.error_message}; {note}" if row.error_message else note
    session.flush()
    return [row.label for row in rows]


def reap_expired_leases(session: Session, settings: Settings, now: dt.datetime) -> list[str]:
    """Take back ``processing`` months whose lease ran out and that no worker
    holds; each counts as one failed attempt."""
    rows = session.scalars(
        select(BackfillLog)
        .where(BackfillLog.status == "processing", BackfillLog.lease_expires_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    reaped = []
    for row in rows:
        # A live worker holds the month's advisory lock (slow, not dead): leave it.
        free = session.scalar(select(func.pg_try_advisory_xact_lock(LOCK_NAMESPACE, row.id)))
        if not free:
            continue
        reaped.append(f"{row.label}:{take_back_lost(session, row, settings, now)}")
    session.flush()
    return reaped


def try_lock(conn: Connection, row_id: int) -> bool:
    """Take the month's session-level advisory lock; it dies with the connection,
    so a killed worker never leaves it behind."""
    got = bool(conn.scalar(select(func.pg_try_advisory_lock(LOCK_NAMESPACE, row_id))))
    conn.commit()
    return got


def unlock(conn: Connection, row_id: int) -> None:
    conn.rollback()
    conn.scalar(select(func.pg_advisory_unlock(LOCK_NAMESPACE, row_id)))
    conn.commit()


def begin(
    session: Session,
    year: int,
    month: int,
    job_id: uuid.UUID | None,
    worker: str | None,
    settings: Settings | None = None,
    interrupted_attempt: int | None = None,
) -> Claim:
    """Start an attempt: check the month is ours (or claim it, by hand) and
    record the attempt. The caller holds the month's advisory lock.

    ``interrupted_attempt``: this job's own earlier delivery started that
    attempt and gave up on it after an infrastructure error (the task retried
    itself): an attempt of the job still ``running`` up to that id is closed
    ``deferred``, no retry spent. Any other attempt of the job still
    ``running`` belonged to a worker that died mid-month (the message came
    back): one failure. Raises :class:`MonthClosed` when that spent the last
    retry (commit it), :class:`MonthNotClaimable` when nothing changed."""
    settings = settings or get_settings()
    row = get(session, year, month, lock=True)
    now = db_now(session)
    if row.status == "completed":
        raise MonthNotClaimable(f"{row.label} is already completed")
    attempt: MonthAttempt | None = None
    if job_id is not None and row.job_id == job_id:
        attempt = session.scalar(
            select(MonthAttempt)
            .where(
                MonthAttempt.backfill_id == row.id,
                MonthAttempt.job_id == job_id,
                MonthAttempt.outcome == "running",
            )
            .order_by(MonthAttempt.id.desc())
        )
        if attempt is not None and attempt.worker is not None:
            if interrupted_attempt is not None and attempt.id <= interrupted_attempt:
                # Our own earlier delivery, cut short by the infrastructure.
                _close_attempts(
                    session,
                    row.id,
                    job_id,
                    "deferred",
                    "interrupted: the database went away; the job's retry took over",
                )
            else:
                # Delivered before and never finished: that worker died mid-month.
                status = _count_failure(
                    row, "worker lost mid-month (redelivered)", settings, now, None
                )
                _close_attempts(session, row.id, job_id, "lost", row.error_message)
                if status == "failed":
                    session.flush()
                    raise MonthClosed(f"{row.label} failed: retry budget spent", status)
            attempt = None
            claim(session, row, settings, now, job_id=job_id)
        elif attempt is None:
            claim(session, row, settings, now, job_id=job_id)  # a Celery retry of this job
    else:
        if _live_lease(row, now):
            raise MonthNotClaimable(
                f"{row.label} is claimed by job {row.job_id} until {row.lease_expires_at}"
            )
        if job_id is not None and row.not_before is not None and row.not_before > now:
            raise MonthNotClaimable(f"{row.label} is deferred until {row.not_before}")
        if job_id is not None and row.status == "failed":
            raise MonthNotClaimable(f"{row.label} has failed; retry it explicitly")
        if row.status == "processing":  # an expired claim of a lost job
            status = take_back_lost(session, row, settings, now)
            if job_id is not None and status == "failed":
                session.flush()
                raise MonthClosed(f"{row.label} failed: retry budget spent", status)
        claim(session, row, settings, now, reset_budget=job_id is None, job_id=job_id)
    if attempt is None:
        attempt = session.scalars(
            select(MonthAttempt)
            .where(MonthAttempt.backfill_id == row.id)
            .order_by(MonthAttempt.id.desc())
        ).first()
    assert attempt is not None and row.job_id is not None
    attempt.worker = worker or "unknown"
    attempt.started_at = now
    row.status = "processing"
    row.lease_expires_at = now + dt.timedelta(seconds=settings.lease_seconds)
    session.flush()
    return Claim(
        row_id=row.id,
        year=row.year,
        month=row.month,
        job_id=row.job_id,
        attempt_id=attempt.id,
        attempt=attempt.attempt,
        retry_count=row.retry_count,
        prompt_variant=row.prompt_variant,
        batch_size=row.batch_size,
    )


def close_cancelled(session: Session, year: int, month: int, job_id: uuid.UUID, reason: str) -> int:
    """Celery terminated this job's running attempt itself (the worker lost the
    broker and cancels what it can no longer acknowledge): close it ``deferred``,
    keeping the claim, so the redelivered message takes over without spending a
    retry. Returns the attempts closed."""
    row = session.scalar(
        select(BackfillLog).where(BackfillLog.year == year, BackfillLog.month == month)
    )
    if row is None or row.job_id != job_id or row.status != "processing":
        return 0
    result = session.execute(
        update(MonthAttempt)
        .where(
            MonthAttempt.backfill_id == row.id,
            MonthAttempt.job_id == job_id,
            MonthAttempt.outcome == "running",
            MonthAttempt.worker.is_not(None),
        )
        .values(outcome="deferred", error=reason[:2000], finished_at=func.clock_timestamp())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def renew_lease(session: Session, claim_: Claim, settings: Settings) -> bool:
    """Push the lease forward while a long month works; False if it was taken back."""
    result = session.execute(
        update(BackfillLog)
        .where(
            BackfillLog.id == claim_.row_id,
            BackfillLog.job_id == claim_.job_id,
            BackfillLog.status == "processing",
        )
        .values(
            lease_expires_at=func.clock_timestamp() + dt.timedelta(seconds=settings.lease_seconds)
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _record_attempt(attempt: MonthAttempt, stats: AttemptStats) -> None:
    # The *_calls counters of the month and of the attempt are charged call by
    # call, in the ledger's transaction (quota.charging), so they stay exact even
    # for killed attempts: they are not written here.
    attempt.generators_reused = stats.generators_reused
    attempt.tokens_in = stats.tokens_in
    attempt.tokens_out = stats.tokens_out
    attempt.books_generated = stats.books_generated
    attempt.isbns_resolved = stats.isbns_resolved
    attempt.invalid_isbns = stats.invalid_isbns
    attempt.model = stats.model
    attempt.prompt_version = stats.prompt_version
    attempt.finished_at = func.clock_timestamp()


def _load(session: Session, claim_: Claim) -> tuple[BackfillLog, MonthAttempt]:
    row = session.get(BackfillLog, claim_.row_id, with_for_update=True, populate_existing=True)
    attempt = session.get(MonthAttempt, claim_.attempt_id, populate_existing=True)
    assert row is not None and attempt is not None
    return row, attempt


def complete(session: Session, claim_: Claim, stats: AttemptStats) -> None:
    """The attempt succeeded: final counters, ``completed``."""
    row, attempt = _load(session, claim_)
    _record_attempt(attempt, stats)
    row.status = "completed"
    row.completed_at = db_now(session)
    row.books_generated = stats.books_generated
    row.isbns_resolved = stats.isbns_resolved
    row.resolution_rate = Decimal(str(round(stats.resolution_rate, 2)))
    row.error_message = None
    row.lease_expires_at = None
    row.not_before = None
    attempt.outcome = "completed"
    session.flush()


def fail_attempt(
    session: Session,
    claim_: Claim,
    error: str,
    stats: AttemptStats,
    settings: Settings,
    retry_at: dt.datetime | None,
) -> str:
    """The attempt failed: ``retry`` (budget left) or ``failed``; returns which."""
    row, attempt = _load(session, claim_)
    _record_attempt(attempt, stats)
    status = _count_failure(row, error, settings, db_now(session), retry_at)
    attempt.outcome = status
    attempt.error = error[:2000]
    session.flush()
    return status


def defer(session: Session, claim_: Claim, exc: QuotaExhausted, stats: AttemptStats) -> None:
    """A quota ran out: wait for its reset without spending a retry."""
    row, attempt = _load(session, claim_)
    _record_attempt(attempt, stats)
    row.status = "retry" if row.retry_count else "pending"
    row.not_before = exc.resets_at
    row.job_id = None
    row.lease_expires_at = None
    row.error_message = str(exc)[:2000]
    attempt.outcome = "deferred"
    attempt.error = str(exc)[:2000]
    session.flush()


def close_for_operator(session: Session, row: BackfillLog, why: str) -> None:
    """Before an operator's retry or reopen of a locked row with no live lease:
    close whatever its claim left open (a lost job's ``running`` attempts, or the
    attempts of a job waiting for its Celery retry), so none stays ``running``
    once the month moves on. No retry is spent: the operator resets the budget."""
    if row.job_id is not None:
        _close_attempts(session, row.id, row.job_id, "lost", f"{LOST_ERROR}; {why}")


def refuse_stale(session: Session, year: int, month: int, job_id: uuid.UUID | None) -> None:
    """Close the attempt row of a message that was refused (no state change otherwise)."""
    if job_id is None:
        return
    row = session.scalar(
        select(BackfillLog).where(BackfillLog.year == year, BackfillLog.month == month)
    )
    if row is not None and row.job_id != job_id:
        _close_attempts(session, row.id, job_id, "refused", "message refused: month not claimable")


# backfill_log's per-month counter of each provider's requests (migration 0004 adds
# the Open Library and Google Books ones); month_attempts has the same columns.
CALL_COLUMNS = {
    "gemini": "gemini_calls",
    "xai": "xai_calls",
    "isbndb": "isbndb_calls",
    "openlibrary": "openlibrary_calls",
    "googlebooks": "googlebooks_calls",
}


def count_call(conn: Connection, provider: str, backfill_id: int, attempt_id: int | None) -> None:
    """One request sent for a month: +1 on its ``*_calls`` counter and on its
    attempt's (when given), in one statement, so they can never disagree. Runs in
    the caller's transaction (the quota ledger's, with the request's reservation)."""
    column = CALL_COLUMNS[provider]
    conn.execute(
        text(
            f"WITH attempt AS (UPDATE month_attempts SET {column} = {column} + 1"
            " WHERE id = :attempt AND backfill_id = :id)"
            f" UPDATE backfill_log SET {column} = {column} + 1 WHERE id = :id"
        ),
        {"id": backfill_id, "attempt": attempt_id},
    )


def recount_queued(session: Session, backfill_id: int) -> None:
    """``isbns_queued``: the distinct ISBNs of the month's sent, current hand-off
    batches (recounted, never incremented, so a batch confirmed twice counts once)."""
    session.execute(
        text(
            "UPDATE backfill_log SET isbns_queued = ("
            " SELECT count(DISTINCT isbn) FROM handoffs h, unnest(h.isbns) AS isbn"
            " WHERE h.backfill_id = :id AND h.sent_at IS NOT NULL AND h.superseded_at IS NULL)"
            " WHERE id = :id"
        ),
        {"id": backfill_id},
    )


def reset_queued(session: Session, backfill_id: int) -> None:
    """``isbns_queued`` back to 0 (its batches were superseded). An UPDATE, not an
    attribute: the recount is plain SQL, so a loaded row may hold an older value
    and the ORM would see nothing to write."""
    session.execute(update(BackfillLog).where(BackfillLog.id == backfill_id).values(isbns_queued=0))


def record_counts(session: Session, row_id: int, books_generated: int, isbns_resolved: int) -> None:
    """Set a month's book counters (from its candidates); its status is left alone,
    so a completed month stays completed when re-resolution finds more books."""
    rate = round(100.0 * isbns_resolved / books_generated, 2) if books_generated else 0.0
    session.execute(
        update(BackfillLog)
        .where(BackfillLog.id == row_id)
        .values(
            books_generated=books_generated,
            isbns_resolved=isbns_resolved,
            resolution_rate=Decimal(str(rate)),
        )
    )


def retry(session: Session, year: int, month: int) -> BackfillLog:
    """An operator's retry: a failed month (or one waiting out its retry backoff)
    back to ``pending`` with a fresh retry budget; refused when already pending,
    completed or under a live lease."""
    row = lock_for_manual_claim(session, year, month)
    if row.status == "pending":
        raise MonthNotClaimable(f"{row.label} is already pending: the next schedule run takes it")
    close_for_operator(session, row, "retried by the operator")
    row.status = "pending"
    row.retry_count = 0
    row.not_before = None
    row.job_id = None
    row.lease_expires_at = None
    session.flush()
    return row


def reopen(session: Session, year: int, month: int) -> BackfillLog:
    """Put a month back to ``pending`` with a fresh budget and zero book counters
    (for fresh generator lists); refused while a worker holds a live lease."""
    row = get(session, year, month, lock=True)
    if _live_lease(row, db_now(session)):
        raise MonthNotClaimable(
            f"{row.label} is being processed by job {row.job_id} until {row.lease_expires_at}"
        )
    close_for_operator(session, row, "month reopened by the operator")
    row.status = "pending"
    row.retry_count = 0
    row.completed_at = None
    row.not_before = None
    row.job_id = None
    row.lease_expires_at = None
    row.error_message = None
    row.books_generated = 0
    row.isbns_resolved = 0
    row.resolution_rate = Decimal("0")
    session.flush()
    return row
