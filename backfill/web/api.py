"""The internal API (``/api/internal/*``): the original system's paths and shapes.

Views are thin: validate (:mod:`backfill.web.inputs`), open a unit of work,
call the same service functions the CLI and the tasks call, serialise.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

from backfill import months, scheduler, stats
from backfill.web.auth import require_cron_secret
from backfill.web.context import settings, unit_of_work
from backfill.web.inputs import json_body, month_param, query_args
from backfill.web.schemas import (
    EmptyBody,
    ExecutionSummary,
    MonthsQuery,
    PauseResponse,
    RetryResponse,
    ScheduleError,
    ScheduleRequest,
    ScheduleResponse,
    SeedRequest,
    SeedResponse,
)

bp = Blueprint("api", __name__, url_prefix="/api/internal")


@bp.before_request
def _authenticate() -> None:
    require_cron_secret(settings())


def _json(model: Any, **dump: Any) -> ResponseReturnValue:
    return jsonify(model.model_dump(mode="json", **dump))


@bp.post("/schedule-backfill")
def schedule_backfill() -> ResponseReturnValue:
    """Claim up to ``batch_size`` months and dispatch them (or list them, in a dry run)."""
    body = json_body(ScheduleRequest)
    cfg = settings()
    batch_size = body.batch_size if "batch_size" in body.model_fields_set else None
    year_range = None
    if body.year_range is not None:
        # The original's default range is written start 2024 -> end 2000.
        year_range = (
            body.year_range.start if body.year_range.start is not None else cfg.year_end,
            body.year_range.end if body.year_range.end is not None else cfg.year_start,
        )
    with unit_of_work() as session:
        result = scheduler.schedule(
            session,
            batch_size=batch_size or cfg.default_batch_size,
            dry_run=body.dry_run,
            year_range=year_range,
            force_retry=body.force_retry,
            settings=cfg,
        )
    # The totals were read in the claim's own transaction, before publishing: no
    # read after the publish can turn work already done into a 5xx.
    totals = result.totals
    response = ScheduleResponse(
        dry_run=result.dry_run,
        batch_size=result.batch_size,
        paused=result.paused,
        months_selected=len(result.months),
        months=result.months,
        total_pending=totals["pending"],
        total_processing=totals["processing"],
        total_completed=totals["completed"],
        total_failed=totals["failed"],
        total_retry=totals["retry"],
        execution_summary=None
        if result.dry_run
        else ExecutionSummary(
            triggered=result.triggered, skipped=result.skipped, errors=len(result.errors)
        ),
        execution_errors=[ScheduleError(**e) for e in result.errors],
        blocked_until=result.blocked_until,
    )
    exclude = {"execution_summary"} if result.dry_run else set()
    return _json(response, exclude=exclude)


@bp.get("/backfill-stats")
def backfill_stats() -> ResponseReturnValue:
    """Months by status, progress, recent activity, API calls, today's quota, pause."""
    with unit_of_work() as session:
        report = stats.backfill_stats(session, settings())
    return _json(report)


@bp.post("/seed-backfill-queue")
def seed_backfill_queue() -> ResponseReturnValue:
    """Insert one pending row per month of the range; idempotent."""
    body = json_body(SeedRequest)
    cfg = settings()
    start = body.year_start if "year_start" in body.model_fields_set else cfg.year_start
    end = body.year_end if "year_end" in body.model_fields_set else cfg.year_end
    with unit_of_work() as session:
        result = scheduler.seed_months(session, start, end)
    return _json(
        SeedResponse(
            months_seeded=result.inserted,
            months_existing=result.existing,
            message=f"seeded {result.inserted} new months for {start}-{end}"
            f" ({result.existing} already there)",
            year_start=start,
            year_end=end,
        )
    )


@bp.get("/months")
def list_months() -> ResponseReturnValue:
    """Months filtered by status and year, newest first, paginated."""
    query = query_args(MonthsQuery)
    with unit_of_work() as session:
        page = stats.list_months(
            session, status=query.status, year=query.year, limit=query.limit, offset=query.offset
        )
    return _json(page)


@bp.get("/months/<month>")
def month_detail(month: str) -> ResponseReturnValue:
    """One month with its attempt history and last error."""
    year, mon = month_param(month)
    with unit_of_work() as session:
        detail = stats.month_detail(session, months.get(session, year, mon))
    return _json(detail)


@bp.post("/months/<month>/retry")
def retry_month(month: str) -> ResponseReturnValue:
    """Put a failed month back in the queue with a fresh retry budget."""
    year, mon = month_param(month)
    json_body(EmptyBody)
    with unit_of_work() as session:
        row = scheduler.retry_month(session, year, mon)
        session.flush()
        out = stats.month_row(row)
    return _json(
        RetryResponse(
            month=out, message=f"{out.label} is pending again; the next schedule run takes it"
        )
    )


def _set_paused(paused: bool) -> ResponseReturnValue:
    json_body(EmptyBody)
    with unit_of_work() as session:
        scheduler.set_paused(session, paused)
    message = (
        "dispatching paused; workers finish what they already have"
        if paused
        else "dispatching resumed"
    )
    return _json(PauseResponse(paused=paused, message=message))


@bp.post("/pause")
def pause() -> ResponseReturnValue:
    """Stop dispatching months (workers keep running)."""
    return _set_paused(True)


@bp.post("/resume")
def resume() -> ResponseReturnValue:
    """Start dispatching months again."""
    return _set_paused(False)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
