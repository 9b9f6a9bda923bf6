"""Global quotas and request rates, shared by every worker through PostgreSQL.

The ledger (``quota_usage``) holds, per provider, one row per quota day (starting
at the last reset, ``QUOTA_RESET_HOUR_UTC``) and a short log of the rate grants
(``"window" = 'grant'``: one row per request, ``window_start`` = the moment it may
leave). :func:`reserve` takes one unit of the day and one rate slot in one short
transaction *before* a request is sent, so the ledger counts exactly the
requests made, whatever the number of processes; it then sleeps until the slot
and returns, and the request leaves at once.

Rates hold on any clock, not only on ours (the API's window may be out of step
with the database clock, and the network adds its jitter):

* a per-second provider (ISBNdb, Open Library) at R requests a second gets
  consecutive slots at least ``(1 / R) * (1 + RATE_MARGIN)`` apart, across every
  worker: no window of one second, however aligned, can see more than R;
* a per-minute provider (Gemini, xAI, Google Books) at R a minute may burst, as
  its plan allows: at most R slots in any sliding window of ``60 * (1 +
  RATE_MARGIN)`` seconds of the database clock (so none in any minute of any
  clock either).

Every reservation of one provider runs under one transaction-level advisory
lock, so the day count and the grant log are read and written by one process at
a time (the transactions are a few statements long). A daily limit of 0 means no
call at all that day; a per-minute limit of 0 means no minute limit.

A day the API itself said is spent (:func:`mark_exhausted`) is closed until the
reset, except for one probe every ``QUOTA_PROBE_MINUTES``: the first process to
reserve once the probe is due gets one unit (the others are refused as before);
if that request is answered, :func:`clear_exhausted` reopens the day.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from backfill import months
from backfill.config import Settings, get_settings
from backfill.constants import PROVIDERS
from backfill.db import db_now, get_engine
from backfill.exceptions import QuotaExhausted

log = logging.getLogger(__name__)

UTC = dt.UTC
# A slot is committed at most this long before it is due; a process whose slot
# would be later waits and asks again, so a worker killed while it waits leaves
# at most this much of an unsent reservation behind.
RESERVE_AHEAD_SECONDS = 1.0
# Rate-grant rows (and rows of the older per-window format) older than this are
# pruned as new grants are written.
KEEP_RATE_ROWS = dt.timedelta(hours=1)
# A bare rate-or-quota answer (ISBNdb's 429 "Limit Exceeded") is taken for the
# day's quota only when the ledger's count of the day is this close to the limit:
# within NEAR_LIMIT_CALLS requests or NEAR_LIMIT_FRACTION of it, whichever is more.
NEAR_LIMIT_FRACTION = 0.02
NEAR_LIMIT_CALLS = 10
# Namespace of the advisory locks that serialize one provider's reservations
# (months.LOCK_NAMESPACE is 7_301); the second key is the provider's index.
QUOTA_LOCK_NAMESPACE = 7_302

_RESERVE_DAY = text(
    """
    INSERT INTO quota_usage (provider, "window", window_start, calls, exhausted)
    SELECT :provider, 'day', :start, 1, false WHERE :limit > 0
    ON CONFLICT (provider, "window", window_start) DO UPDATE
        SET calls = quota_usage.calls + 1
        WHERE quota_usage.calls < :limit AND NOT quota_usage.exhausted
    RETURNING calls
    """
)
# The day is spent by the API's word (not by our count) and its probe is due: take
# the one unit of the probe, and move the next probe on (one process wins it).
_TAKE_PROBE = text(
    """
    WITH probe AS (
        UPDATE quota_usage SET window_start = :next_probe
        WHERE provider = :provider AND "window" = 'probe' AND window_start <= :now
        RETURNING provider
    )
    UPDATE quota_usage SET calls = quota_usage.calls + 1
    FROM probe
    WHERE quota_usage.provider = probe.provider AND quota_usage."window" = 'day'
        AND quota_usage.window_start = :start AND quota_usage.exhausted
        AND quota_usage.calls < :limit
    RETURNING quota_usage.calls
    """
)
_RECENT_GRANTS = text(
    """
    SELECT window_start FROM quota_usage
    WHERE provider = :provider AND "window" = 'grant'
    ORDER BY window_start DESC LIMIT :count
    """
)
_GRANT = text(
    """
    INSERT INTO quota_usage (provider, "window", window_start, calls, exhausted)
    VALUES (:provider, 'grant', :slot, 1, false)
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


@dataclass(frozen=True)
class Grant:
    """What :func:`reserve` granted: a slot (already waited for) and whether the
    request is the probe of a day marked spent (see :func:`clear_exhausted`)."""

    slot: dt.datetime | None  # on the database clock; None: no rate limit
    probe: bool = False


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


def spacing_rule(limits: Limits, margin: float) -> tuple[int, dt.timedelta] | None:
    """``(count, span)``: at most ``count`` slots in any ``span`` of the database clock.

    Per second: one slot per ``(1 / rate) * (1 + margin)`` (even spacing); per
    minute: ``rate`` slots per ``60 * (1 + margin)`` seconds (bursts allowed).
    None when the provider has no rate limit.
    """
    if limits.rate <= 0:
        return None
    if limits.window == "second":
        return 1, dt.timedelta(seconds=(1.0 + margin) / limits.rate)
    return limits.rate, dt.timedelta(seconds=60.0 * (1.0 + margin))


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


def _lock(conn: Connection, provider: str) -> None:
    """Serialize ``provider``'s reservations until the transaction ends."""
    conn.execute(
        text("SELECT pg_advisory_xact_lock(:ns, :key)"),
        {"ns": QUOTA_LOCK_NAMESPACE, "key": PROVIDERS.index(provider)},
    )


# (backfill_log id, month_attempts id or None) of the month being charged.
_charged_month: contextvars.ContextVar[tuple[int, int | None] | None] = contextvars.ContextVar(
    "backfill_charged_month", default=None
)


@contextlib.contextmanager
def charging(backfill_id: int, attempt_id: int | None = None) -> Iterator[None]:
    """Within the block, each reserved call is also added to that month's
    ``*_calls`` counter -- and to its attempt's (``month_attempts``), when given --
    in the same transaction as its ledger unit, so a month's counters and the sum
    of its attempts' equal the requests sent for it even when its worker is killed
    mid-month. (Threads started inside must run in a copy of the context.)"""
    token = _charged_month.set((backfill_id, attempt_id))
    try:
        yield
    finally:
        _charged_month.reset(token)


def _charge(conn: Connection, provider: str) -> None:
    charged = _charged_month.get()
    if charged is not None:
        months.count_call(conn, provider, *charged)


def _spent(conn: Connection, provider: str, start: dt.datetime, limits: Limits) -> str:
    """Why the day is closed, as the deferred month should say it: the API's own
    answer (:func:`mark_exhausted`), or our ledger's count reaching the limit."""
    row = conn.execute(
        text(
            "SELECT calls, exhausted FROM quota_usage WHERE provider = :provider"
            " AND \"window\" = 'day' AND window_start = :start"
        ),
        {"provider": provider, "start": start},
    ).first()
    used = int(row.calls) if row else 0
    if row is not None and row.exhausted and used < limits.daily:
        return f"daily quota reached (the API said so; the ledger counts {used} of {limits.daily})"
    return f"daily budget of {limits.daily} spent (global ledger)"


@dataclass(frozen=True)
class _Wait:
    seconds: float


def reserve(provider: str, settings: Settings | None = None) -> Grant:
    """Reserve one call of ``provider`` in the global ledger; call right before each request.

    Sleeps until the request's slot (see the module's note on rates), so the
    request must be sent as soon as this returns. Raises :class:`QuotaExhausted`
    when the day's budget is spent or the API said so (:func:`mark_exhausted`),
    unless this call wins the day's probe (``Grant.probe``). The unit is
    committed in its own short transaction, visible to every worker at once.
    """
    settings = settings or get_settings()
    limits = limits_for(provider, settings)
    engine = get_engine(settings.database_url)
    while True:
        with engine.connect() as conn:
            outcome = _try_reserve(conn, provider, limits, settings)
            answered = time.monotonic()
        if isinstance(outcome, _Wait):
            # Jitter spreads the processes that wake for the same slot.
            time.sleep(outcome.seconds + random.uniform(0.0, 0.02))
            continue
        grant, delay = outcome
        # The wait was measured on the database clock just before the commit: the
        # commit and this process's scheduling take part of it, not add to it.
        remaining = delay - (time.monotonic() - answered)
        if remaining > 0:
            time.sleep(remaining)
        return grant


def _try_reserve(
    conn: Connection, provider: str, limits: Limits, settings: Settings
) -> tuple[Grant, float] | _Wait:
    """One attempt: ``(grant, seconds until its slot)`` when reserved (committed), else
    a :class:`_Wait` (nothing kept) before asking again."""
    rule = spacing_rule(limits, settings.rate_margin)
    with conn.begin() as tx:
        _lock(conn, provider)
        now = db_now(conn)
        start = day_start(settings, now)
        day = conn.execute(
            _RESERVE_DAY, {"provider": provider, "start": start, "limit": limits.daily}
        ).first()
        probe = False
        if day is None:
            probe = _take_probe(conn, provider, limits, settings, start, now)
            if not probe:
                why = _spent(conn, provider, start, limits)
                tx.rollback()
                raise QuotaExhausted(provider, start + dt.timedelta(days=1), why)
        if rule is None:
            _charge(conn, provider)
            return Grant(None, probe), 0.0  # no rate limit: commit the day unit
        count, span = rule
        recent = conn.execute(_RECENT_GRANTS, {"provider": provider, "count": count}).scalars()
        times = list(recent)
        slot = now
        if times:
            slot = max(slot, times[0] + dt.timedelta(microseconds=1))
        if len(times) >= count:
            slot = max(slot, times[count - 1] + span)
        ahead = (slot - now).total_seconds()
        if ahead > RESERVE_AHEAD_SECONDS:
            # Too far ahead to hold: undo the day unit and ask again nearer the slot.
            tx.rollback()
            return _Wait(ahead - RESERVE_AHEAD_SECONDS)
        conn.execute(_GRANT, {"provider": provider, "slot": slot})
        _prune(conn, provider, now)
        _charge(conn, provider)
        # Measured as late as possible: only the commit lies between this reading
        # and the caller's clock, the same few milliseconds in every process.
        ahead = (slot - db_now(conn)).total_seconds()
        return Grant(slot, probe), ahead  # commits on leaving the block


def _take_probe(
    conn: Connection,
    provider: str,
    limits: Limits,
    settings: Settings,
    start: dt.datetime,
    now: dt.datetime,
) -> bool:
    """Whether this call takes the due probe of a day marked spent (see the module)."""
    minutes = settings.quota_probe_minutes
    if minutes <= 0:
        return False
    row = conn.execute(
        _TAKE_PROBE,
        {
            "provider": provider,
            "start": start,
            "now": now,
            "limit": limits.daily,
            "next_probe": now + dt.timedelta(minutes=minutes),
        },
    ).first()
    if row is None:
        return False
    log.warning("%s: probing whether the day marked spent is really spent", provider)
    return True


def _prune(conn: Connection, provider: str, now: dt.datetime) -> None:
    conn.execute(
        text(
            'DELETE FROM quota_usage WHERE provider = :provider AND "window" IN'
            " ('grant', 'second', 'minute') AND window_start < :before"
        ),
        {"provider": provider, "before": now - KEEP_RATE_ROWS},
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

    Until the reset, :func:`reserve` refuses every call of that provider, except
    one probe every ``QUOTA_PROBE_MINUTES`` (the first one due that long from now).
    """
    settings = settings or get_settings()
    limits_for(provider, settings)  # reject an unknown provider early
    with get_engine(settings.database_url).begin() as conn:
        _lock(conn, provider)
        now = db_now(conn)
        start = day_start(settings, now)
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
        conn.execute(
            text("DELETE FROM quota_usage WHERE provider = :provider AND \"window\" = 'probe'"),
            {"provider": provider},
        )
        minutes = settings.quota_probe_minutes
        if minutes > 0:
            conn.execute(
                text(
                    """
                    INSERT INTO quota_usage (provider, "window", window_start, calls, exhausted)
                    VALUES (:provider, 'probe', :at, 0, false)
                    """
                ),
                {"provider": provider, "at": now + dt.timedelta(minutes=minutes)},
            )
    if settings.quota_probe_minutes > 0:
        log.warning(
            "%s reported its daily quota exhausted; paused, one probe in %g min",
            provider,
            settings.quota_probe_minutes,
        )
    else:
        log.warning("%s reported its daily quota exhausted; paused until the reset", provider)
    return start + dt.timedelta(days=1)


def clear_exhausted(provider: str, settings: Settings | None = None) -> None:
    """The probe of a day marked spent was answered: reopen the day (our own count
    of it still applies)."""
    settings = settings or get_settings()
    with get_engine(settings.database_url).begin() as conn:
        _lock(conn, provider)
        start = day_start(settings, db_now(conn))
        conn.execute(
            text(
                "UPDATE quota_usage SET exhausted = false WHERE provider = :provider"
                " AND \"window\" = 'day' AND window_start = :start"
            ),
            {"provider": provider, "start": start},
        )
        conn.execute(
            text("DELETE FROM quota_usage WHERE provider = :provider AND \"window\" = 'probe'"),
            {"provider": provider},
        )
    log.warning("%s answered the probe: its day is open again", provider)


def near_daily_limit(provider: str, settings: Settings | None = None) -> bool:
    """Whether the ledger's count of ``provider``'s day is close enough to the daily
    limit for an ambiguous refusal to be the day's quota (see NEAR_LIMIT_*)."""
    settings = settings or get_settings()
    limit = limits_for(provider, settings).daily
    with get_engine(settings.database_url).connect() as conn:
        start = day_start(settings, db_now(conn))
        used = conn.execute(
            text(
                "SELECT calls FROM quota_usage WHERE provider = :provider AND \"window\" = 'day'"
                " AND window_start = :start"
            ),
            {"provider": provider, "start": start},
        ).scalar()
    margin = max(NEAR_LIMIT_CALLS, math.ceil(limit * NEAR_LIMIT_FRACTION))
    return int(used or 0) >= limit - margin


def daily_usage(session: Session, settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Today's usage per provider: used, limit, remaining, exhausted, resets_at (ISO)."""
    settings = settings or get_settings()
    start = day_start(settings, db_now(session))
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
    """Providers whose day budget is spent, with the time they may be usable again.

    That is the reset, or for a day the API said is spent (not our own count) the
    time of its next probe when that comes first: once the probe is due the
    provider is not listed, so the scheduler claims months again and the first
    request probes (:func:`reserve`).

    Every provider is listed, the optional resolvers (Open Library, Google Books)
    included; which exhaustion stops every month is decided by
    :func:`backfill.scheduler.blocked_until` (ISBNdb, or both generators), not here.
    """
    settings = settings or get_settings()
    now = db_now(session)
    probes = {
        str(row.provider): row.window_start
        for row in session.execute(
            text("SELECT provider, window_start FROM quota_usage WHERE \"window\" = 'probe'")
        )
    }
    blocked: dict[str, dt.datetime] = {}
    for provider, info in daily_usage(session, settings).items():
        if not info["exhausted"]:
            continue
        until = dt.datetime.fromisoformat(info["resets_at"])
        probe_at = probes.get(provider)
        counted_out = info["used"] >= info["limit"]
        if probe_at is not None and not counted_out and settings.quota_probe_minutes > 0:
            if probe_at <= now:
                continue  # the probe is due: let one request find out
            until = min(until, probe_at)
        blocked[provider] = until
    return blocked
