"""The months dashboard (``GET /``) and the read-only JSON it refreshes from.

Protection (see README, "Dashboard"): the dashboard is read-only and shows no
secrets. It is open to clients on the loopback interface (an operator on the
host, or through ``ssh -L``); any other client -- including a loopback request
relayed by a reverse proxy, recognised by its ``X-Forwarded-For``/``Forwarded``
header -- must first log in with the cron secret, which sets a signed,
HttpOnly, SameSite=Strict session cookie. Without a configured secret, remote
access is refused. Wrong secrets at ``/login`` count towards the same
per-address throttle as the internal API's (429 with ``Retry-After``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress

from flask import (
    Blueprint,
    Flask,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict

from backfill import months, stats
from backfill.constants import MONTH_STATUSES
from backfill.stats import GridCell, StatsReport
from backfill.web.auth import authenticate, configured_secret, too_many_attempts_message
from backfill.web.context import settings, unit_of_work
from backfill.web.errors import ApiError
from backfill.web.inputs import month_param

bp = Blueprint("dashboard", __name__)

MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
REFRESH_SECONDS = 10
SESSION_KEY = "dashboard"


class DashboardData(BaseModel):
    """``GET /dashboard/data``: what the page shows, for its auto-refresh."""

    model_config = ConfigDict(extra="forbid")

    stats: StatsReport
    grid: list[GridCell]
    generated_at: dt.datetime


def _is_local() -> bool:
    if request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded"):
        return False  # relayed by a proxy: the real client is elsewhere
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def allowed() -> bool:
    """May this request see the dashboard?"""
    return _is_local() or session.get(SESSION_KEY) is True


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    if request.endpoint in ("dashboard.login", "dashboard.logout") or allowed():
        return None
    if request.path.startswith("/dashboard/"):
        raise ApiError(401, "unauthorized", "log in at /login first", field="session")
    return redirect(url_for("dashboard.login", next=request.path))


def _data() -> DashboardData:
    with unit_of_work() as s:
        report = stats.backfill_stats(s, settings())
        cells = stats.grid(s)
    return DashboardData(stats=report, grid=cells, generated_at=dt.datetime.now(dt.UTC))


@bp.get("/")
def index() -> ResponseReturnValue:
    """The page: a years x months grid, totals, today's quota, paused/running."""
    data = _data()
    by_month = {(c.year, c.month): c for c in data.grid}
    years = sorted({c.year for c in data.grid}, reverse=True)
    return render_template(
        "dashboard.html",
        data=data,
        years=years,
        cells=by_month,
        month_names=MONTH_NAMES,
        statuses=MONTH_STATUSES,
        refresh_seconds=current_app.config.get("DASHBOARD_REFRESH_SECONDS", REFRESH_SECONDS),
        logged_in=session.get(SESSION_KEY) is True,
    )


@bp.get("/dashboard/data")
def data() -> ResponseReturnValue:
    """The page's numbers as JSON (polled by the page every few seconds)."""
    return jsonify(_data().model_dump(mode="json"))


@bp.get("/dashboard/months/<month>")
def month(month: str) -> ResponseReturnValue:
    """One month's detail and attempt history (shown when a cell is clicked)."""
    year, mon = month_param(month)
    with unit_of_work() as s:
        detail = stats.month_detail(s, months.get(s, year, mon))
    return jsonify(detail.model_dump(mode="json"))


def _safe_next(target: str | None) -> str:
    # Only local paths: never an open redirect to another site.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Exchange the cron secret for a signed session cookie (remote access)."""
    enabled = configured_secret(settings()) is not None
    error = None
    headers: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        given = request.form.get("secret")
        # An empty form guesses nothing: answered without the throttle's database read.
        verdict = authenticate(given, settings()) if enabled and given else None
        if not enabled:
            error, status = "remote access is disabled: BACKFILL_CRON_SECRET is not set", 401
        elif verdict is not None and verdict.retry_after is not None:
            # Throttled (backfill.web.throttle): refused whatever was sent.
            error, status = too_many_attempts_message(verdict.retry_after), 429
            headers["Retry-After"] = str(verdict.retry_after)
        elif verdict is not None and verdict.ok:
            session.clear()
            session[SESSION_KEY] = True
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
        else:
            error, status = "wrong secret", 401
    return render_template("login.html", error=error, enabled=enabled), status, headers


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("dashboard.login"))


def session_secret_key(cron_secret: str) -> str:
    """The cookie-signing key, derived from the cron secret (no extra setting to manage;
    changing the secret logs everyone out)."""
    return hmac.new(cron_secret.encode(), b"backfill-dashboard-session", hashlib.sha256).hexdigest()


def init_app(app: Flask) -> None:
    secret = configured_secret(app.extensions["backfill"].settings)
    if secret and not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = session_secret_key(secret)
    app.register_blueprint(bp)
