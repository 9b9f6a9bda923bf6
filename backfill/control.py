"""Small operator state shared by every process (``control_state``): the pause
flag and when the scheduler last ran. Data layer: the one module that reads and
writes the table; functions take a session and do not commit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from backfill.models import ControlState


def _set_state(session: Session, key: str, value: dict[str, Any]) -> None:
    stmt = pg_insert(ControlState).values(key=key, value=value)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": stmt.excluded.value, "updated_at": func.clock_timestamp()},
        )
    )


def record_schedule_run(session: Session, now: dt.datetime, claimed: int) -> None:
    """Record a scheduler run (``/metrics`` shows its age)."""
    _set_state(session, "last_schedule", {"at": now.isoformat(), "claimed": claimed})


def last_schedule_run(session: Session) -> dt.datetime | None:
    """When the scheduler last ran successfully (None: never)."""
    value = session.scalar(select(ControlState.value).where(ControlState.key == "last_schedule"))
    at = value.get("at") if isinstance(value, dict) else None
    if not isinstance(at, str):
        return None
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:  # a hand-edited row
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def set_paused(session: Session, paused: bool) -> None:
    """Stop (or resume) dispatching; workers finish what they already have."""
    _set_state(session, "paused", {"paused": bool(paused)})


def is_paused(session: Session) -> bool:
    """Whether dispatching is paused."""
    value = session.scalar(select(ControlState.value).where(ControlState.key == "paused"))
    return bool(value and value.get("paused"))
