"""Thin Celery tasks: take plain JSON, call a plain function, map the outcome.

* ``backfill.schedule`` -- beat runs it every ``BACKFILL_BEAT_INTERVAL_SECONDS``;
  it also sends the enrichment batches earlier hand-offs could not
  (:func:`backfill.handoff.sweep`).
* ``backfill.process_month`` -- one month; a failed attempt becomes a Celery
  retry (exponential backoff with jitter), mirrored in ``backfill_log``, where
  the month's ``retry_count`` is the truth for how many attempts failed.
* ``backfill.reresolve`` -- open candidates through the resolution chain again
  (no LLM call); beat runs it daily, the API and the CLI on demand.

Only the month's own failures spend its budget. When the database goes away
mid-attempt the task retries itself shortly, naming the attempt it gave up on
(``interrupted_attempt``), and the retry closes that attempt ``deferred``. A
broker connection loss does not cancel running months (celeryconfig); should
that be turned on, the worker's main process closes a cancelled month's attempt
``deferred`` (:meth:`MonthTask.on_retry`) before the message comes back. Only a
message redelivered because its worker died (``kill -9``) finds its attempt
still ``running`` and counts it as lost.

By hand: ``celery -A backfill call backfill.process_month --args='[2024, 5]'``,
``celery -A backfill call backfill.schedule`` and ``celery -A backfill call
backfill.reresolve --kwargs='{"month": "2024-05", "older_than_days": 7}'``.
Arguments typed by hand are checked first: a bad one is refused with one log
line naming it, and nothing changes.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from celery.exceptions import Retry
from sqlalchemy.exc import DBAPIError, OperationalError

from backfill import handoff, months, rework, runner, scheduler
from backfill.celery import app
from backfill.config import get_settings
from backfill.constants import TASK_PROCESS_MONTH, TASK_RERESOLVE, TASK_SCHEDULE
from backfill.db import transaction, unit_of_work
from backfill.exceptions import AttemptInterrupted, InvalidInput
from backfill.task_args import month_task_args, reresolve_task_args

log = logging.getLogger(__name__)

# While the database is unreachable nothing can be recorded: try again later
# without touching the month (its lease heals anything left half-done).
DB_RETRY_SECONDS = 5


@app.task(name=TASK_SCHEDULE, bind=True, ignore_result=True)
def schedule_task(
    self: Task,
    batch_size: int | None = None,
    dry_run: bool = False,
    year_range: list[int] | None = None,
    force_retry: bool = False,
) -> dict[str, Any]:
    """Claim candidate months and dispatch them (what beat triggers)."""
    settings = get_settings()
    try:
        if batch_size is not None:
            scheduler.check_batch_size(batch_size)
        with unit_of_work() as session:
            result = scheduler.schedule(
                session,
                batch_size=batch_size or settings.default_batch_size,
                dry_run=dry_run,
                year_range=tuple(year_range) if year_range else None,  # type: ignore[arg-type]
                force_retry=force_retry,
                settings=settings,
            )
    except InvalidInput as exc:  # typed by hand (celery call): refuse, change nothing
        log.warning("backfill.schedule refused: %s", exc)
        return {"error": str(exc)}
    except OperationalError as exc:
        log.warning("schedule skipped, database unreachable: %s", exc.orig or exc)
        return {"error": "database unreachable"}
    summary = {
        "dispatched": [f"{m.label}:{m.job_id}" for m in result.months if not result.dry_run],
        "triggered": result.triggered,
        "errors": len(result.errors),  # a count, as in the API's execution_summary
        "execution_errors": result.errors,
        "reaped": result.reaped,
        "settled": result.settled,
        "paused": result.paused,
        "blocked_until": result.blocked_until,
    }
    if not dry_run:
        summary["handoff"] = _sweep_handoffs()
    if result.triggered or result.errors or result.reaped or result.settled:
        log.info("schedule: %s", summary)
    return summary


def _sweep_handoffs() -> dict[str, Any]:
    """Each beat: send the enrichment batches earlier hand-offs could not (never raises)."""
    try:
        with unit_of_work() as session:
            done = handoff.sweep(session)
    except Exception as exc:  # the months are fine; the next beat tries again
        log.warning("hand-off sweep failed: %r", exc)
        return {"error": str(exc)[:300]}
    if done.sent or done.failed:
        log.info("hand-off sweep: %d batches sent, %d failed", done.sent, done.failed)
    return {"sent": done.sent, "failed": done.failed}


class MonthTask(Task):
    """``backfill.process_month``'s class: it hears when Celery itself cancels a run."""

    def on_retry(
        self,
        exc: Exception,
        task_id: str,
        args: Any,
        kwargs: Any,
        einfo: Any,
    ) -> None:
        # A retry the task asked for runs this in the pool process with einfo set.
        # Celery calls it with einfo None, in the worker's main process, when it
        # terminates an unacknowledged late-ack task after losing the broker
        # (worker_cancel_long_running_tasks_on_connection_loss): the worker is
        # alive and the database is up, so say so on the attempt before the
        # message comes back.
        if einfo is None and isinstance(exc, Retry):
            release_cancelled(args, kwargs, str(exc.message or exc))


def release_cancelled(args: Any, kwargs: Any, reason: str) -> int:
    """Close the running attempt of a month run Celery cancelled (see
    :meth:`MonthTask.on_retry`) as ``deferred``; never raises. Returns how many."""
    try:
        values = dict(zip(("year", "month", "job_id", "batch_size"), args or (), strict=False))
        values.update(kwargs or {})
        year, month, _, job_id = month_task_args(
            values.get("year"), values.get("month"), values.get("batch_size"), values.get("job_id")
        )
        if job_id is None:  # typed by hand without a job: nothing to tell it by
            return 0
        with transaction() as session:
            closed = months.close_cancelled(
                session,
                year,
                month,
                uuid.UUID(job_id),
                f"terminated by Celery ({reason}): the worker lost the broker; not the month's"
                " failure",
            )
    except Exception as exc:  # the redelivery then counts it as lost: no worse than before
        log.warning("could not record a cancelled month run: %r", exc)
        return 0
    if closed:
        log.warning("%04d-%02d: run cancelled by Celery, attempt closed as deferred", year, month)
    return closed


@app.task(
    name=TASK_PROCESS_MONTH,
    base=MonthTask,
    bind=True,
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Celery's retry limit, the same budget as the month's retry_count in
    # PostgreSQL (BACKFILL_MAX_RETRIES, default 5); the row is the truth, see
    # _retry_limit().
    max_retries=get_settings().max_retries,
)
def process_month(
    self: Task,
    year: int,
    month: int,
    job_id: str | None = None,
    batch_size: int | None = None,
    interrupted_attempt: int | None = None,
) -> str:
    """Process one month; failed attempts retry with backoff until the budget is spent.

    ``interrupted_attempt`` is set only by this task's own retry after the
    database went away mid-attempt (see the module's note)."""
    try:
        year, month, batch_size, job_id = month_task_args(year, month, batch_size, job_id)
        if interrupted_attempt is not None and (
            not isinstance(interrupted_attempt, int)
            or isinstance(interrupted_attempt, bool)
            or interrupted_attempt < 1
        ):
            raise InvalidInput("interrupted_attempt", "must be a positive attempt id")
    except InvalidInput as exc:
        # A message typed by hand: refused before anything is read or written.
        log.warning("backfill.process_month refused: %s", exc)
        return "refused"
    try:
        outcome = runner.process(
            year,
            month,
            job_id,
            batch_size,
            worker=self.request.hostname,
            interrupted_attempt=interrupted_attempt,
        )
    except AttemptInterrupted as exc:
        # The infrastructure's fault, not the month's: come back to the same claim
        # and attempt, which the retry closes as deferred (no retry spent).
        log.warning("database unreachable mid-attempt, retrying in %ss: %s", DB_RETRY_SECONDS, exc)
        kwargs = {
            "year": year,
            "month": month,
            "job_id": exc.job_id,
            "batch_size": batch_size,
            "interrupted_attempt": exc.attempt_id,
        }
        raise self.retry(
            args=(),
            kwargs=kwargs,
            countdown=DB_RETRY_SECONDS,
            max_retries=_retry_limit(self),
        ) from None
    except (OperationalError, DBAPIError) as exc:
        log.warning("database unreachable, retrying in %ss: %s", DB_RETRY_SECONDS, exc.orig or exc)
        raise self.retry(
            countdown=DB_RETRY_SECONDS, exc=exc, max_retries=_retry_limit(self)
        ) from None
    if outcome.status == "retry":
        # Keep the job id: a month run by hand keeps the claim it took.
        kwargs = {"year": year, "month": month, "job_id": outcome.job_id, "batch_size": batch_size}
        raise self.retry(
            args=(), kwargs=kwargs, countdown=outcome.countdown, max_retries=_retry_limit(self)
        )
    if outcome.status == "busy":
        raise self.retry(
            countdown=max(get_settings().lease_seconds / 10, 1), max_retries=_retry_limit(self)
        )
    return outcome.status


def _retry_limit(task: Task) -> int:
    """The limit to pass to ``retry()``: never below this retry's number.

    The month's ``retry_count`` decides when it has failed for good (the runner
    marks it ``failed`` and no retry is asked for); Celery's own count also
    includes retries that spent no budget (database unreachable, another
    delivery still busy) and must not end a month that still has attempts left.
    """
    return max(task.max_retries or 0, task.request.retries + 1)


@app.task(
    name=TASK_RERESOLVE,
    bind=True,
    ignore_result=True,
    # Acknowledged on receipt, unlike the month tasks: a run can outlast
    # RabbitMQ's consumer timeout under the ISBNdb rate limit, and a lost run
    # costs nothing -- tomorrow's tick (or the operator) takes the rest.
    acks_late=False,
)
def reresolve_task(
    self: Task, month: str | None = None, older_than_days: float | None = None
) -> dict[str, Any]:
    """Send open candidates (one month, or all) through the resolution chain again."""
    try:
        target, older_than = reresolve_task_args(month, older_than_days)
    except InvalidInput as exc:
        log.warning("backfill.reresolve refused: %s", exc)
        return {"refused": str(exc)}
    try:
        return rework.reresolve(target, older_than).as_json()
    except OperationalError as exc:  # what was committed stays; the next run takes the rest
        log.warning("re-resolution stopped, database unreachable: %s", exc.orig or exc)
        return {"error": "database unreachable"}
