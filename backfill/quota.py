"""Global quotas and request rates, shared by every worker through PostgreSQL.

The ledger (``quota_usage``) holds one row per provider per window: the day
(starting at the last reset, ``QUOTA_RESET_HOUR_UTC``) and the provider's rate
window (ISBNdb and Open Library: the second; Gemini, xAI and Google Books: the
minute). :func:`reserve` takes
one unit from both in one short transaction *before* a request is sent, so the
ledger counts exactly the requests made, whatever the number of processes.

Windows are aligned on the database clock (``clock_timestamp()``), never on a
worker's clock, so every process agrees on where a second starts. A daily
limit of 0 means no call at all that day; a per-minute limit of 0 means no
minute limit.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from backfill.config import Settings, get_settings
from backfill.db import get_engine
from backfill.exceptions import QuotaExhausted
from backfill.models import PROVIDERS

log = logging.getLogger(__name__)

UTC = dt.UTC
# A rate-window unit is only granted this long before the window ends, so the
# request it pays for reaches the API inside the same wall-clock window even
# after a commit and a slow thread switch (the API counts on arrival).
WINDOW_GUARD_SECONDS = 0.25
# Rate-window rows older than this are pruned when a new window opens.
KEEP_RATE_ROWS = dt.timedelta(hours=1)

_RESERVE_DAY = text(
    """
    INSERT INTO quota_usage (provider, "window", window_start, calls, exhausted)
    VALUES (:provider, 'day', :start, 1, false)
    ON CONFLICT (provider, "window", window_start) DO UPDATE
        SET calls = quota_usage.calls + 1
        WHERE quota_usage.calls < :limit AND NOT quota_usage.exhausted
    RETURNING calls
    """
)
_RESERVE_RATE = text(
    """
    INSERT INTO quota_usage (provider, "window", window_start, calls, exhausted)
    VALUES (:provider, :window, date_trunc(:unit, clock_timestamp()), 1, false)
    ON CONFLICT (provider, "window", window_start) DO UPDATE
        SET calls = quota_usage.calls + 1
        WHERE quota_usage.calls < :limit
    RETURNING calls, window_start, clock_timestamp() AS now
    """
)


@dataclass(frozen=True)
class Limits:
    """One provider's budget: calls per day and per rate window (0 = no rate limit)."""

    daily: int
    rate: int
    window: str  # 'second' | 'minute'

    @property
    def window_length(self) -> dt.timedelta:
        return dt.timedelta(seconds=1 if self.window == "second" else 60)


def limits_for(provider: str, settings: Settings) -> Limits:
    """The configured limits of ``provider`` (one of :data:`backfill.models.PROVIDERS`)."""
    if provider == "isbndb":
        return Limits(settings.isbndb_daily_limit, settings.isbndb_rate_per_second, "second")
    if provider == "gemini":
        return Limits(settings.gemini_daily_limit, settings.gemini_rate_per_minute, "minute")
    if provider == "xai":
        return Limits(settings.xai_daily_limit, settings.xai_rate_per_minute, "minute")
    if provider == "openlibrary":
        return Limits(
            settings.openlibrary_daily_limit, settings.openlibrary_rate_per_second, "second"
        )
    if provider == "googlebooks":
        return Limits(
            settings.google_books_daily_limit, settings.google_books_rate_per_minute, "minute"
        )
    raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")


def day_start(settings: Settings, now: dt.datetime) -> dt.datetime:
    """Start of the quota day containing ``now`` (the last reset at or before it)."""
    now = now.astimezone(UTC)
    start = now.replace(hour=settings.quota_reset_hour_utc, minute=0, second=0, microsecond=0)
    return start if start <= now else start - dt.timedelta(days=1)


def next_reset(settings: Settings | None = None, now: dt.datetime | None = None) -> dt.datetime:
    """When the daily quotas reset next (UTC), after ``now`` (default: this instant)."""
    settings = settings or get_settings()
    now = now or dt.datetime.now(UTC)
    return day_start(settings, now) + dt.timedelta(days=1)


def _db_now(conn: Connection | Session) -> dt.datetime:
    value = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    assert isinstance(value, dt.datetime)
    return value


_charged_month: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "backfill_charged_month", default=None
)
# backfill_log's per-month counter of each provider's requests (migration 0004 adds
# the Open Library and Google Books ones).
_CALL_COLUMNS = {
    "gemini": "gemini_calls",
    "xai": "xai_calls",
    "isbndb": "isbndb_calls",
    "openlibrary": "openlibrary_calls",
    "googlebooks": "googlebooks_calls",
}


@contextlib.contextmanager
def charging(backfill_id: int) -> Iterator[None]:
    """Within the block, each reserved call is also added to that month's
    ``*_calls`` counter in the same transaction as its ledger unit, so a month's
    counters equal the requests sent for it even when its worker is killed
    mid-month. (Threads started inside must run in a copy of the context.)"""
    token = _charged_month.set(backfill_id)
    try:
        yield
    finally:
        _charged_month.reset(token)


def _charge(conn: Connection, provider: str) -> None:
    backfill_id = _charged_month.get()
    if backfill_id is not None:
        column = _CALL_COLUMNS[provider]
        conn.execute(
            text(f"UPDATE backfill_log SET {column} = {column} + 1 WHERE id = :id"),
            {"id": backfill_id},
        )


def reserve(provider: str, settings: Settings | None = None) -> None:
    """Reserve one call of ``provider`` in the global ledger; call right before each request.

    Blocks (sleeping until the next window) while the provider's per-second or
    per-minute rate is spent by any process; raises :class:`QuotaExhausted` when
    the day's budget is spent or the API said so (:func:`mark_exhausted`).
    Runs in its own short transaction, visible to every worker once it returns.
    """
    settings = settings or get_settings()
    limits = limits_for(provider, settings)
    engine = get_engine(settings.database_url)
    while True:
        with engine.connect() as conn:
            wait = _try_reserve(conn, provider, limits, settings)
        if wait is None:
            return
        # Jitter spreads the processes that wake for the same window boundary.
        time.sleep(wait + random.uniform(0.0, 0.02))


def _try_reserve(
    conn: Connection, provider: str, limits: Limits, settings: Settings
) -> float | None:
    """One attempt: None when reserved (committed), else seconds to wait for the next window."""
    with conn.begin() as tx:
        now = _db_now(conn)
        start = day_start(settings, now)
        day = conn.execute(
            _RESERVE_DAY, {"provider": provider, "start": start, "limit": limits.daily}
        ).first()
        if day is None:
            tx.rollback()
            raise QuotaExhausted(
                provider, start + dt.timedelta(days=1), "daily budget spent (global ledger)"
            )
        if limits.rate <= 0:
            _charge(conn, provider)
            return None  # no rate window: commit the day unit
        row = conn.execute(
            _RESERVE_RATE,
            {
                "provider": provider,
                "window": limits.window,
                "unit": limits.window,
                "limit": limits.rate,
            },
        ).first()
        if row is not None:
            granted_until = row.window_start + limits.window_length
            if row.now < granted_until - dt.timedelta(seconds=WINDOW_GUARD_SECONDS):
                if row.calls == 1:
                    _prune(conn, provider, limits.window, row.now)
                _charge(conn, provider)
                return None  # commits both units on leaving the block
            now, end = row.now, granted_until
        else:
            now = _db_now(conn)
            end = _window_start(now, limits.window) + limits.window_length
        # Window full (or too close to its end to be safe): undo the day unit too.
        tx.rollback()
        return max((end - now).total_seconds(), 0.001)


def _window_start(now: dt.datetime, window: str) -> dt.datetime:
    if window == "second":
        return now.replace(microsecond=0)
    return now.replace(second=0, microsecond=0)


def _prune(conn: Connection, provider: str, window: str, now: dt.datetime) -> None:
    conn.execute(
        text(
            'DELETE FROM quota_usage WHERE provider = :provider AND "window" = :window'
            " AND window_start < :before"
        ),
        {"provider": provider, "window": window, "before": now - KEEP_RATE_ROWS},
    )


_RECORD_OUTCOME = text(
    """
    INSERT INTO api_call_outcomes (provider, outcome, calls) VALUES (:provider, :outcome, 1)
    ON CONFLICT (provider, outcome) DO UPDATE
        SET calls = api_call_outcomes.calls + 1, updated_at = clock_timestamp()
    """
)


def record_outcome(provider: str, outcome: str, settings: Settings | None = None) -> None:
    """Count how one request sent to ``provider`` ended (for ``/metrics``).

    Best effort: the request was made and paid for in the ledger already, so a
    database hiccup here is logged, never raised into the month's work.
    """
    settings = settings or get_settings()
    try:
        with get_engine(settings.database_url).begin() as conn:
            conn.execute(_RECORD_OUTCOME, {"provider": provider, "outcome": outcome})
    except Exception as exc:  # counting must never fail a month
        log.warning("could not count a %s call (%s): %s", provider, outcome, type(exc).__name__)


def mark_exhausted(provider: str, settings: Settings | None = None) -> dt.datetime:
    """Record that ``provider`` itself said the day's quota is gone; returns the reset time.

    Until the reset, :func:`reserve` refuses every call of that provider.
    """
    settings = settings or get_settings()
    limits_for(provider, settings)  # reject an unknown provider early
    with get_engine(settings.database_url).begin() as conn:
        start = day_start(settings, _db_now(conn))
        conn.execute(
            text(
                """
                INSERT INTO quota_usage (provider, "window", window_start, calls, exhausted)
                VALUES (:provider, 'day', :start, 0, true)
                ON CONFLICT (provider, "window", window_start) DO UPDATE SET exhausted = true
                """
            ),
            {"provider": provider, "start": start},
        )
    log.warning("%s reported its daily quota exhausted; paused until the reset", provider)
    return start + dt.timedelta(days=1)


def daily_usage(session: Session, settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Today's usage per provider: used, limit, remaining, exhausted, resets_at (ISO)."""
    settings = settings or get_settings()
    start = day_start(settings, _db_now(session))
    rows = session.execute(
        text(
            "SELECT provider, calls, exhausted FROM quota_usage WHERE \"window\" = 'day'"
            " AND window_start = :start"
        ),
        {"start": start},
    ).all()
    by_provider = {row.provider: row for row in rows}
    resets_at = (start + dt.timedelta(days=1)).isoformat()
    usage: dict[str, dict[str, Any]] = {}
    for provider in PROVIDERS:
        limit = limits_for(provider, settings).daily
        row = by_provider.get(provider)
        used = int(row.calls) if row else 0
        usage[provider] = {
            "used": used,
            "limit": limit,
            "remaining": max(limit - used, 0),
            "exhausted": bool(row and row.exhausted) or used >= limit,
            "resets_at": resets_at,
        }
    return usage


def blocked_providers(session: Session, settings: Settings | None = None) -> dict[str, dt.datetime]:
    """Providers whose day budget is spent, with the time they become usable again.

    Every provider is listed, the optional resolvers (Open Library, Google Books)
    included; which exhaustion stops every month is decided by
    :func:`backfill.months.blocked_until` (ISBNdb, or both generators), not here.
    """
    settings = settings or get_settings()
    return {
        provider: dt.datetime.fromisoformat(info["resets_at"])
        for provider, info in daily_usage(session, settings).items()
        if info["exhausted"]
    }
