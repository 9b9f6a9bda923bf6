"""Failed-authentication throttle, per client address, shared by every web process.

Guessing the cron secret must be slow: after :data:`MAX_FAILURES` wrong secrets
within :data:`WINDOW_SECONDS` from one address, that address is locked out for
:data:`BASE_LOCKOUT_SECONDS`, doubling with each further lockout up to
:data:`MAX_LOCKOUT_SECONDS`. An address that stays quiet for a day starts afresh.

The state is one ``auth_failures`` row per address in PostgreSQL, not in process
memory: gunicorn runs several worker processes, and a counter per process would
multiply the allowed guesses by their number. Every time comes from the database
clock (``clock_timestamp()``), so all workers agree on windows and lockouts
whatever their own clocks say.

Two statements, both on the primary key:

* :func:`lockout_remaining` -- a read, made for every request that presents a
  secret, *before* the secret decides anything: a locked address is refused
  whatever it sent, so the lockout never tells a guess from the right secret.
* :func:`record_failure` -- one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``
  per wrong secret. PostgreSQL takes the row lock and evaluates the update on
  the latest row, so concurrent failures from any number of workers count
  exactly and at most one of them starts a lockout.

Functions take a session and do not commit; the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

MAX_FAILURES = 5
WINDOW_SECONDS = 60
BASE_LOCKOUT_SECONDS = 60
MAX_LOCKOUT_SECONDS = 3600
# After this long without a failure an address's lockout history is forgotten.
FORGET_SECONDS = 24 * 3600

# A lockout must outlast the window it was earned in: the first failure after it
# then opens a fresh window instead of re-locking on a stale count.
assert BASE_LOCKOUT_SECONDS >= WINDOW_SECONDS

_REMAINING = text(
    "SELECT locked_until, clock_timestamp() AS now FROM auth_failures"
    " WHERE address = :address AND locked_until > clock_timestamp()"
)

# ``EXCLUDED.window_start`` is this statement's one reading of the clock; in the
# SET list every bare column is the row as it was before this failure.
_RECORD = text(
    """
    WITH clock AS (SELECT clock_timestamp() AS now)
    INSERT INTO auth_failures AS f (address, window_start, failures, locked_until, lockouts)
    SELECT :address, clock.now, 1, NULL, 0 FROM clock
    ON CONFLICT (address) DO UPDATE SET
        window_start = CASE
            WHEN f.locked_until > EXCLUDED.window_start THEN f.window_start
            WHEN f.window_start <= EXCLUDED.window_start - make_interval(secs => :window)
                THEN EXCLUDED.window_start
            ELSE f.window_start END,
        failures = CASE
            WHEN f.locked_until > EXCLUDED.window_start THEN f.failures + 1
            WHEN f.window_start <= EXCLUDED.window_start - make_interval(secs => :window) THEN 1
            ELSE f.failures + 1 END,
        locked_until = CASE
            WHEN f.locked_until > EXCLUDED.window_start THEN f.locked_until
            WHEN f.window_start > EXCLUDED.window_start - make_interval(secs => :window)
                 AND f.failures + 1 >= :max_failures
                THEN EXCLUDED.window_start + make_interval(secs => least(
                    :base * power(2, least(
                        CASE WHEN greatest(f.window_start, f.locked_until)
                                  < EXCLUDED.window_start - make_interval(secs => :forget)
                             THEN 0 ELSE f.lockouts END, 16)),
                    :cap))
            ELSE f.locked_until END,
        lockouts = CASE
            WHEN greatest(f.window_start, f.locked_until)
                 < EXCLUDED.window_start - make_interval(secs => :forget) THEN 0
            ELSE f.lockouts END
          + CASE
            WHEN f.locked_until > EXCLUDED.window_start THEN 0
            WHEN f.window_start > EXCLUDED.window_start - make_interval(secs => :window)
                 AND f.failures + 1 >= :max_failures THEN 1
            ELSE 0 END
    RETURNING failures, locked_until, lockouts, clock_timestamp() AS now
    """
)


@dataclass(frozen=True)
class Failure:
    """An address's state right after :func:`record_failure` counted one more failure."""

    failures: int  # in the current window, including attempts refused while locked
    lockouts: int
    locked_for: int | None  # whole seconds left of a lockout, None when not locked

    @property
    def locked_now(self) -> bool:
        """True when this very failure started the lockout (it was the last allowed)."""
        return self.locked_for is not None and self.failures == MAX_FAILURES


def _seconds_left(until: dt.datetime | None, now: dt.datetime) -> int | None:
    if until is None or until <= now:
        return None
    return max(1, math.ceil((until - now).total_seconds()))


def lockout_remaining(session: Session, address: str) -> int | None:
    """Whole seconds until ``address`` may try again, or None when it is not locked out."""
    row = session.execute(_REMAINING, {"address": address}).first()
    return None if row is None else _seconds_left(row.locked_until, row.now)


def record_failure(session: Session, address: str) -> Failure:
    """Count one failed authentication from ``address``; lock it out at the limit."""
    row = session.execute(
        _RECORD,
        {
            "address": address,
            "window": WINDOW_SECONDS,
            "max_failures": MAX_FAILURES,
            "base": BASE_LOCKOUT_SECONDS,
            "cap": MAX_LOCKOUT_SECONDS,
            "forget": FORGET_SECONDS,
        },
    ).one()
    return Failure(
        failures=row.failures,
        lockouts=row.lockouts,
        locked_for=_seconds_left(row.locked_until, row.now),
    )
