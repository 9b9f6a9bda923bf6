"""Seeding, candidate selection and claiming, lease reaping (the pause flag it
obeys lives in :mod:`backfill.control`).

:func:`schedule` is the one place months are handed out. It claims candidates
with ``SELECT … FOR UPDATE SKIP LOCKED`` so concurrent schedulers (two beats,
an operator, the API) never claim a month twice, COMMITs, and only then
publishes one message per month -- the row is the truth, the message a nudge.
Unlike other service functions it owns that commit, because publishing must
follow it; a crash between the two is healed by the lease. Everything the
caller reports (the months, the totals by status) is read before publishing,
so once the claims are committed nothing afterwards can fail the run: a
database error after the publish is logged and healed by the lease. A publish
the broker did not confirm defers its month for a moment (no retry spent: the
broker's fault, not the month's).

A dry run answers what a real run would do now: nothing while paused or while
a quota every month needs is spent (``paused``, ``blocked_until`` say why).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from backfill import months, quota
from backfill.broker import CeleryPublisher, MonthMessage, Publisher
from backfill.config import Settings, get_settings
from backfill.constants import MAX_YEAR, MIN_YEAR, MONTH_STATUSES
from backfill.control import is_paused, record_schedule_run
from backfill.control import set_paused as set_paused  # its old home: callers import it here
from backfill.db import db_now
from backfill.exceptions import InvalidInput
from backfill.models import BackfillLog, MonthAttempt
from backfill.stats.reports import ScheduledMonth

log = logging.getLogger(__name__)

CONTEMPORARY_FROM = 2020
SEED_BATCH_SIZE = 20


class SeedResult(NamedTuple):
    """How many months a seed inserted, and how many were already there
    (``inserted, existing = seed_months(session)`` works too)."""

    inserted: int
    existing: int


@dataclass
class ScheduleResult:
    """The outcome of one :func:`schedule` call."""

    dry_run: bool
    batch_size: int
    paused: bool = False
    months: list[ScheduledMonth] = field(default_factory=list)
    triggered: int = 0
    skipped: int = 0
    # one {"year", "month", "error"} per failed publish (the API counts them in
    # execution_summary.errors and lists them in execution_errors)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # months per status, read in the claim's transaction (see schedule())
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MONTH_STATUSES, 0))
    reaped: list[str] = field(default_factory=list)
    # providers whose spent quota stops every month, until when (ISO): nothing is
    # claimed (or, in a dry run, listed) while this is not empty
    blocked_until: dict[str, str] = field(default_factory=dict)
    # months found out of budget (BACKFILL_MAX_RETRIES lowered) and marked failed
    settled: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        """Why nothing is (or would be) claimed, if that is why: paused, or quota."""
        if self.paused:
            return "paused"
        if self.blocked_until:
            spent = ", ".join(f"{p} until {t}" for p, t in sorted(self.blocked_until.items()))
            return f"quota spent: {spent}"
        return None

    @property
    def dispatched(self) -> list[ScheduledMonth]:
        """The months claimed *and* published (none in a dry run)."""
        if self.dry_run:
            return []
        failed = {(e.get("year"), e.get("month")) for e in self.errors}
        return [m for m in self.months if (m.year, m.month) not in failed]

    @property
    def job_ids(self) -> dict[str, str]:
        """``YYYY-MM`` -> job id of each dispatched month."""
        return {m.label: str(m.job_id) for m in self.dispatched if m.job_id}


def prompt_variant_for(year: int) -> str:
    return "contemporary-notable" if year >= CONTEMPORARY_FROM else "baseline"


def _check_year(name: str, year: object) -> int:
    if not isinstance(year, int) or isinstance(year, bool):
        raise InvalidInput(name, "must be an integer year")
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidInput(name, f"must be between {MIN_YEAR} and {MAX_YEAR}")
    return year


def seed_months(
    session: Session,
    start_year: int = 2000,
    end_year: int = 2024,
    *,
    start_month: int = 1,
    end_month: int = 12,
) -> SeedResult:
    """Insert one pending row per month from ``start_year-start_month`` to
    ``end_year-end_month`` (whole years by default); idempotent."""
    _check_year("year_start", start_year)
    _check_year("year_end", end_year)
    if end_year < start_year:
        raise InvalidInput("year_end", f"must not be before year_start ({start_year})")
    for name, value in (("start_month", start_month), ("end_month", end_month)):
        if not isinstance(value, int) or not 1 <= value <= 12:
            raise InvalidInput(name, "must be a month from 1 to 12")
    first, last = start_year * 12 + start_month, end_year * 12 + end_month
    if last < first:
        raise InvalidInput("end_month", "the range ends before it starts")
    rows = [
        {
            "year": y,
            "month": m,
            "status": "pending",
            "prompt_variant": prompt_variant_for(y),
            "batch_size": SEED_BATCH_SIZE,
        }
        for y in range(start_year, end_year + 1)
        for m in range(1, 13)
        if first <= y * 12 + m <= last
    ]
    stmt = (
        pg_insert(BackfillLog)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["year", "month"])
        .returning(BackfillLog.id)
    )
    inserted = len(session.execute(stmt).all())
    return SeedResult(inserted=inserted, existing=len(rows) - inserted)


def _year_bounds(year_range: tuple[int, int] | None, settings: Settings) -> tuple[int, int]:
    if year_range is None:
        return settings.year_start, settings.year_end
    a, b = year_range
    _check_year("year_range", a)
    _check_year("year_range", b)
    return min(a, b), max(a, b)


def candidates_query(
    settings: Settings,
    now: dt.datetime,
    year_range: tuple[int, int] | None = None,
    force_retry: bool = False,
    limit: int = 10,
) -> Any:
    """The candidate months, newest first. Without ``force_retry`` the status
    predicate is the literal one of ``idx_backfill_log_pending`` so the planner
    can use that partial index. ``force_retry`` adds the months out of budget
    (failed, or retry_count at ``BACKFILL_MAX_RETRIES``), which a claim gives a
    fresh budget."""
    lo, hi = _year_bounds(year_range, settings)
    # A month is settled once ``settle_months`` whole months have begun since.
    cutoff = now.year * 12 + now.month - settings.settle_months
    query = select(BackfillLog).where(
        or_(BackfillLog.not_before.is_(None), BackfillLog.not_before <= now),
        or_(BackfillLog.lease_expires_at.is_(None), BackfillLog.lease_expires_at <= now),
        BackfillLog.year.between(lo, hi),
        BackfillLog.year * 12 + BackfillLog.month <= cutoff,
    )
    if force_retry:
        query = query.where(text("status IN ('pending', 'retry', 'failed')"))
    else:
        query = query.where(
            text("status IN ('pending', 'retry')"), BackfillLog.retry_count < settings.max_retries
        )
    return query.order_by(BackfillLog.year.desc(), BackfillLog.month.desc()).limit(limit)


def status_totals(session: Session) -> dict[str, int]:
    """How many months are in each status (every status present)."""
    totals = dict.fromkeys(MONTH_STATUSES, 0)
    rows = session.execute(select(BackfillLog.status, func.count()).group_by(BackfillLog.status))
    for status, n in rows:
        totals[str(status)] = int(n)
    return totals


def check_batch_size(batch_size: object) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool):
        raise InvalidInput("batch_size", "must be an integer")
    if not 1 <= batch_size <= 50:
        raise InvalidInput("batch_size", "must be between 1 and 50")
    return batch_size


def blocked_until(session: Session, settings: Settings) -> dict[str, dt.datetime]:
    """Providers whose exhausted quota stops every month until their reset: ISBNdb
    (every month resolves through it), or every enabled generator."""
    blocked = quota.blocked_providers(session, settings)
    generators_out = "gemini" in blocked and ("xai" in blocked or not settings.xai_enabled)
    if "isbndb" in blocked or generators_out:
        return blocked
    return {}


def schedule(
    session: Session,
    batch_size: int = 10,
    dry_run: bool = False,
    year_range: tuple[int, int] | None = None,
    force_retry: bool = False,
    publisher: Publisher | None = None,
    settings: Settings | None = None,
) -> ScheduleResult:
    """Claim up to ``batch_size`` candidate months and dispatch one message each."""
    settings = settings or get_settings()
    check_batch_size(batch_size)
    _year_bounds(year_range, settings)
    now = db_now(session)
    result = ScheduleResult(dry_run=dry_run, batch_size=batch_size, paused=is_paused(session))
    query = candidates_query(settings, now, year_range, force_retry, batch_size)

    if dry_run:
        # What a real run would take, lost months included: nothing while paused
        # or blocked; else reap expired leases inside a savepoint, read the
        # candidates, roll it all back.
        result.totals = status_totals(session)
        if result.paused:
            return result
        blocked = blocked_until(session, settings)
        result.blocked_until = {k: v.isoformat() for k, v in blocked.items()}
        savepoint = session.begin_nested()
        try:
            months.reap_expired_leases(session, settings, now)
            months.settle_spent(session, settings, now)
            found = [ScheduledMonth.of(row) for row in session.scalars(query)]
        finally:
            savepoint.rollback()
        if blocked:
            result.skipped = len(found)
        else:
            result.months = found
        return result
    if result.paused:
        result.totals = status_totals(session)
        return result

    result.reaped = months.reap_expired_leases(session, settings, now)
    result.settled = months.settle_spent(session, settings, now)
    blocked = blocked_until(session, settings)
    if blocked:
        result.blocked_until = {k: v.isoformat() for k, v in blocked.items()}
        result.skipped = len(session.scalars(query).all())
        record_schedule_run(session, now, 0)
        result.totals = status_totals(session)
        session.commit()
        return result

    claimed = session.scalars(query.with_for_update(skip_locked=True)).all()
    messages: list[MonthMessage] = []
    for row in claimed:
        fresh = months.out_of_budget(row, settings)
        job_id = months.claim(session, row, settings, now, reset_budget=fresh)
        messages.append(MonthMessage(job_id, row.year, row.month, row.batch_size))
    # Read in the claim's transaction (the claims flushed), before any publish:
    # a request whose claims committed must not fail on a read afterwards.
    result.totals = status_totals(session)
    session.commit()  # the claims are durable before any message exists
    result.months = [ScheduledMonth.of(row) for row in claimed]
    # From here on the claims are done: a database error (say, no pooled
    # connection) is logged, never raised, so the work done is still reported.
    try:
        # The last_schedule row is shared by every scheduler: written in its own short
        # transaction so concurrent schedulers never queue on it while claiming.
        record_schedule_run(session, now, len(claimed))
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("schedule: last_schedule not recorded: %r", exc)

    errors = (publisher or CeleryPublisher()).publish(messages)
    by_job = {row.job_id: (i, row) for i, row in enumerate(claimed)}
    for job_id, error in errors.items():
        i, row = by_job[job_id]
        result.errors.append({"year": row.year, "month": row.month, "error": error})
        try:
            status = months.defer_publish(session, row, job_id, error, settings)
            session.commit()
        except SQLAlchemyError as exc:  # still claimed: its lease takes it back later
            session.rollback()
            log.warning("schedule: failed publish of %s not recorded: %r", row.label, exc)
            continue
        if status != "processing":
            result.totals["processing"] -= 1
            result.totals[status] += 1
        result.months[i] = ScheduledMonth.of(row)
    result.triggered = len(claimed) - len(errors)
    return result


def dispatch_month(
    session: Session,
    year: int,
    month: int,
    batch_size: int | None = None,
    publisher: Publisher | None = None,
    settings: Settings | None = None,
) -> ScheduledMonth:
    """Claim one month by hand (any state but completed or live-leased) and publish it
    (a month out of budget gets a fresh one; a lost claim's attempt is closed first)."""
    settings = settings or get_settings()
    if batch_size is not None:
        check_batch_size(batch_size)
    row = months.lock_for_manual_claim(session, year, month)
    now = db_now(session)
    if row.status == "processing":  # its lease ran out: the worker was lost
        months.take_back_lost(session, row, settings, now)
    fresh = months.out_of_budget(row, settings)
    job_id = months.claim(session, row, settings, now, reset_budget=fresh)
    size = batch_size or row.batch_size
    session.commit()
    errors = (publisher or CeleryPublisher()).publish([MonthMessage(job_id, year, month, size)])
    if errors:
        months.defer_publish(session, row, job_id, errors[job_id], settings)
        session.commit()
    return ScheduledMonth.of(row)


def retry_month(session: Session, year: int, month: int) -> BackfillLog:
    """Put a failed month (or one waiting out its retry backoff) back in the queue
    with a fresh retry budget; a month already pending is refused (nothing to do)."""
    return months.retry(session, year, month)


def attempts_of(session: Session, row: BackfillLog) -> list[MonthAttempt]:
    return list(
        session.scalars(
            select(MonthAttempt).where(MonthAttempt.backfill_id == row.id).order_by(MonthAttempt.id)
        )
    )
