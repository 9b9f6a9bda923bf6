"""``GET /healthz``: can this process reach the database and the broker?

No authentication (load balancers and orchestrators call it) and no details
that could leak: a failed check says what kind of error, not the URL.
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue
from kombu import Connection
from sqlalchemy import text

from backfill.web.context import settings, unit_of_work
from backfill.web.schemas import Check, HealthResponse

bp = Blueprint("health", __name__)

BROKER_TIMEOUT_SECONDS = 2.0


def _describe(exc: BaseException) -> str:
    # The exception class and the OS-level reason only: messages of some
    # drivers repeat the connection URL, password included.
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return f"{type(exc).__name__}: {reason}"[:200]


def check_database() -> Check:
    """``SELECT 1`` through the app's session factory."""
    try:
        with unit_of_work() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        return Check(ok=False, error=_describe(exc))
    return Check(ok=True)


def check_broker(url: str) -> Check:
    """Open (and close) one AMQP connection, giving up after a couple of seconds."""
    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
    except Exception as exc:
        return Check(ok=False, error=_describe(exc))
    return Check(ok=True)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 when both the database and the broker answer, else 503."""
    checks = {"database": check_database(), "broker": check_broker(settings().celery_broker_url)}
    ok = all(c.ok for c in checks.values())
    body = HealthResponse(status="ok" if ok else "unavailable", checks=checks)
    return jsonify(body.model_dump(mode="json")), 200 if ok else 503


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
