"""Parameter types whose mistakes are one clear line and exit status 2 (no usage dump)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click

from backfill.constants import MAX_YEAR, MIN_YEAR
from backfill.task_args import MAX_OLDER_THAN_DAYS


class UserError(click.ClickException):
    """A mistake the user can fix: one line on stderr, exit status 2."""

    exit_code = 2


class _Type(click.ParamType):
    """A parameter type whose errors are one line (no usage dump)."""

    def _parse(self, value: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value.strip())
        except ValueError as exc:
            name = param.opts[0] if param and param.opts else (param.name if param else "value")
            if param is not None and param.param_type_name == "argument":
                name = (param.name or "value").upper()
            raise UserError(f"{name}: {exc} (got {value!r})") from None


class Year(_Type):
    name = "YEAR"

    def _parse(self, value: str) -> int:
        if not re.fullmatch(r"\d{4}", value) or not MIN_YEAR <= int(value) <= MAX_YEAR:
            raise ValueError(f"expected a year from {MIN_YEAR} to {MAX_YEAR}")
        return int(value)


class YearRange(_Type):
    """``2020-2024`` (either order) or a single year ``2021``."""

    name = "YYYY-YYYY"

    def _parse(self, value: str) -> tuple[int, int]:
        match = re.fullmatch(r"(\d{4})(?:\s*[-:]\s*(\d{4}))?", value)
        if not match:
            raise ValueError("expected a year range such as 2020-2024")
        a, b = int(match[1]), int(match[2] or match[1])
        if not (MIN_YEAR <= a <= MAX_YEAR and MIN_YEAR <= b <= MAX_YEAR):
            raise ValueError(f"years must be from {MIN_YEAR} to {MAX_YEAR}")
        return a, b


class Month(_Type):
    name = "YYYY-MM"

    def _parse(self, value: str) -> tuple[int, int]:
        match = re.fullmatch(r"(\d{4})-(\d{2})", value)
        if not match or not 1 <= int(match[2]) <= 12 or not MIN_YEAR <= int(match[1]) <= MAX_YEAR:
            raise ValueError("expected a month as YYYY-MM, e.g. 2024-05")
        return int(match[1]), int(match[2])


class Duration(_Type):
    """An age such as ``7d``, ``12h``, ``30m`` or ``1.5d`` (up to 100 years)."""

    name = "DURATION"
    PER_DAY = {"d": 1, "h": 24, "m": 24 * 60}

    def _parse(self, value: str) -> dt.timedelta:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([dhm])", value.lower())
        if not match:
            raise ValueError("expected a duration such as 7d, 12h or 30m")
        days = float(match[1]) / self.PER_DAY[match[2]]
        if days > MAX_OLDER_THAN_DAYS:  # checked first: timedelta overflows on huge values
            raise ValueError(f"must be at most {MAX_OLDER_THAN_DAYS}d")
        return dt.timedelta(days=days)


class IntIn(_Type):
    """A whole number in ``lo..hi``."""

    name = "N"

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def _parse(self, value: str) -> int:
        if not re.fullmatch(r"\d+", value) or not self.lo <= int(value) <= self.hi:
            raise ValueError(f"expected a whole number from {self.lo} to {self.hi}")
        return int(value)


class OneOf(_Type):
    name = "CHOICE"

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def _parse(self, value: str) -> str:
        if value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}")
        return value
