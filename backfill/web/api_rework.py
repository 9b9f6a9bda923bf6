"""Working a month's books again: ``POST /api/internal/months/{YYYY-MM}/regenerate``
and ``POST /api/internal/reresolve``.

Same guard, error shape and thin views as :mod:`backfill.web.api`. Regeneration
is quick and done in the request; re-resolution can take minutes under the
rate limits, so the request only publishes a ``backfill.reresolve`` task (with
publisher confirms) and answers 202.
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

from backfill import months, rework
from backfill.broker import publish_task
from backfill.constants import TASK_RERESOLVE
from backfill.web.auth import require_cron_secret
from backfill.web.context import settings, unit_of_work
from backfill.web.inputs import json_body, month_param
from backfill.web.schemas import (
    EmptyBody,
    RegenerateResponse,
    ReresolveQueued,
    ReresolveRequest,
)

bp = Blueprint("api_rework", __name__, url_prefix="/api/internal")


@bp.before_request
def _authenticate() -> None:
    require_cron_secret(settings())


@bp.post("/months/<month>/regenerate")
def regenerate_month(month: str) -> ResponseReturnValue:
    """Set the month's generator answers and candidates aside; it is pending again."""
    year, mon = month_param(month)
    json_body(EmptyBody)
    with unit_of_work() as session:
        done = rework.regenerate(session, year, mon)
    response = RegenerateResponse(
        month=done.month,
        generations_superseded=done.generations_superseded,
        candidates_superseded=done.candidates_superseded,
        status=done.status,
    )
    return jsonify(response.model_dump(mode="json"))


@bp.post("/reresolve")
def reresolve() -> ResponseReturnValue:
    """Queue a re-resolution run (one month or all, optionally only stale candidates)."""
    body = json_body(ReresolveRequest)
    target = body.year_month
    if target is not None:
        with unit_of_work() as session:
            months.get(session, *target)  # an unseeded month: 404, nothing queued
    kwargs = {"month": body.month, "older_than_days": body.older_than_days}
    task_id = publish_task(TASK_RERESOLVE, kwargs, settings().celery_broker_url)
    queued = ReresolveQueued(
        queued=True, task_id=task_id, month=body.month, older_than_days=body.older_than_days
    )
    return jsonify(queued.model_dump(mode="json")), 202


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
