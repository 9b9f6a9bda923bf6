"""Checking task arguments that may have been typed by hand (``celery -A backfill call``).

The scheduler and the API only send valid messages; an operator's shell can send
anything. Each check raises :class:`InvalidInput` naming the argument and the
rule, so the task refuses with one log line before reading or writing anything.
Light on imports: the web app and the CLI share the bounds without loading the
worker's modules.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid

from backfill.constants import MAX_YEAR, MIN_YEAR
from backfill.exceptions import InvalidInput

MIN_BATCH, MAX_BATCH = 1, 50
# A hundred years: far beyond any candidate's age, and well inside timedelta's range.
MAX_OLDER_THAN_DAYS = 36500
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def _whole(name: str, value: object, lo: int, hi: int) -> int:
    # bool is an int to Python, never to an operator
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidInput(name, f"must be an integer from {lo} to {hi} (got {value!r})")
    return value


def month_task_args(
    year: object, month: object, batch_size: object = None, job_id: object = None
) -> tuple[int, int, int | None, str | None]:
    """``backfill.process_month``'s arguments, checked: (year, month, batch_size, job_id)."""
    checked_year = _whole("year", year, MIN_YEAR, MAX_YEAR)
    checked_month = _whole("month", month, 1, 12)
    size = None if batch_size is None else _whole("batch_size", batch_size, MIN_BATCH, MAX_BATCH)
    if job_id is not None:
        try:
            job_id = str(uuid.UUID(str(job_id)))
        except ValueError:
            raise InvalidInput("job_id", f"must be a UUID (got {job_id!r})") from None
    return checked_year, checked_month, size, job_id


def parse_month(value: object, name: str = "month") -> tuple[int, int]:
    """``"YYYY-MM"`` as ``(year, month)``, years MIN_YEAR-MAX_YEAR."""
    match = _MONTH.fullmatch(value) if isinstance(value, str) else None
    if match is None or not MIN_YEAR <= int(match[1]) <= MAX_YEAR or not 1 <= int(match[2]) <= 12:
        raise InvalidInput(name, f"must be YYYY-MM, e.g. 2024-05 (got {value!r})")
    return int(match[1]), int(match[2])


def older_than(value: object, name: str = "older_than_days") -> dt.timedelta:
    """A number of days (0 to 36500, fractions allowed) as a timedelta."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_OLDER_THAN_DAYS
    ):
        raise InvalidInput(
            name, f"must be a number of days from 0 to {MAX_OLDER_THAN_DAYS} (got {value!r})"
        )
    return dt.timedelta(days=value)


def reresolve_task_args(
    month: object = None, older_than_days: object = None
) -> tuple[tuple[int, int] | None, dt.timedelta | None]:
    """``backfill.reresolve``'s arguments, checked: (month, older_than)."""
    target = None if month is None else parse_month(month)
    age = None if older_than_days is None else older_than(older_than_days)
    return target, age
