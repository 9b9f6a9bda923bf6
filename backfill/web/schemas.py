"""Request and response models of the internal API (pydantic v2).

Request bodies are validated strictly: JSON types must match exactly
(``"batch_size": "10"``, ``true``, ``null`` or ``1.5`` are refused) and unknown
fields are refused, so a typo never silently means "the default". The same
models generate the OpenAPI document (:mod:`backfill.web.openapi`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from backfill import catalogue
from backfill.constants import MAX_YEAR, MIN_YEAR, MonthStatus
from backfill.stats import MonthRow, ScheduledMonth
from backfill.task_args import MAX_OLDER_THAN_DAYS


def _integral(value: Any) -> Any:
    """JSON has one number type: ``17.0`` is the integer 17 (as JSON Schema's
    ``integer`` says); ``1.5`` stays a float and is refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _not_null(value: Any) -> Any:
    """An optional field may be left out, but ``null`` is not a value for it."""
    if value is None:
        raise ValueError("must not be null; leave the field out for the default")
    return value


def year_pattern(first: int, last: int) -> str:
    r"""A regular expression alternation matching exactly the four-digit years
    ``first`` to ``last``, whole centuries and decades written with ``\d``
    (1900-2100: ``19\d\d|20\d\d|2100``)."""
    parts: list[str] = []
    year = first
    while year <= last:
        for size, digits in ((100, 2), (10, 1), (1, 0)):
            if year % size == 0 and year + size - 1 <= last:
                parts.append(str(year // size) + r"\d" * digits)
                year += size
                break
    return "|".join(parts)


JsonInt = Annotated[int, BeforeValidator(_integral)]
Year = Annotated[int, Field(ge=MIN_YEAR, le=MAX_YEAR), BeforeValidator(_integral)]
YEARS = f"years {MIN_YEAR}-{MAX_YEAR}"
MONTH_PATTERN = rf"^({year_pattern(MIN_YEAR, MAX_YEAR)})-(0[1-9]|1[0-2])$"
MonthText = Annotated[str, Field(pattern=MONTH_PATTERN)]
Days = Annotated[float, Field(ge=0, le=MAX_OLDER_THAN_DAYS, allow_inf_nan=False)]


class StrictBody(BaseModel):
    """A JSON request body: exact types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class YearRange(StrictBody):
    """Years to consider, inclusive, in either order (the original sends 2024 -> 2000)."""

    start: Year | SkipJsonSchema[None] = Field(
        default=None, description="one end; default BACKFILL_YEAR_END"
    )
    end: Year | SkipJsonSchema[None] = Field(
        default=None, description="other end; default BACKFILL_YEAR_START"
    )

    _no_null = field_validator("start", "end", mode="before")(_not_null)


class ScheduleRequest(StrictBody):
    batch_size: JsonInt = Field(
        default=10, ge=1, le=50, description="months to claim (default BACKFILL_BATCH_SIZE)"
    )
    dry_run: bool = Field(default=False, description="list the candidates, claim nothing")
    force_retry: bool = Field(default=False, description="also take failed months")
    year_range: YearRange | SkipJsonSchema[None] = None

    _no_null = field_validator("year_range", mode="before")(_not_null)


class SeedRequest(StrictBody):
    year_start: Year = Field(default=2000, description="default BACKFILL_YEAR_START")
    year_end: Year = Field(default=2024, description="default BACKFILL_YEAR_END")

    @field_validator("year_end")
    @classmethod
    def _ordered(cls, value: int, info: ValidationInfo) -> int:
        start = info.data.get("year_start")
        if start is not None and value < start:
            raise ValueError(f"must be >= year_start ({start})")
        return value


class EmptyBody(StrictBody):
    """Endpoints that take no parameters accept an empty body or ``{}``."""


class ReresolveRequest(StrictBody):
    """``POST /api/internal/reresolve``: which open candidates to try again."""

    month: MonthText | SkipJsonSchema[None] = Field(
        default=None, description="only this month (YYYY-MM); default all"
    )
    older_than_days: Days | SkipJsonSchema[None] = Field(
        default=None,
        description="only candidates last tried at least this many days ago; default any",
    )

    _no_null = field_validator("month", "older_than_days", mode="before")(_not_null)

    @property
    def year_month(self) -> tuple[int, int] | None:
        if self.month is None:
            return None
        year, month = self.month.split("-")
        return int(year), int(month)


class MonthsQuery(BaseModel):
    """Query string of ``GET /api/internal/months`` (strings parsed as numbers, exactly)."""

    model_config = ConfigDict(extra="forbid")

    status: MonthStatus | None = None
    year: Year | None = None
    limit: int = Field(default=100, ge=1, le=500)
    # PostgreSQL's OFFSET is a bigint: a larger value would reach the database and fail (500).
    offset: int = Field(default=0, ge=0, le=2**63 - 1)


class MonthPath(BaseModel):
    """A month in a URL path, ``YYYY-MM``."""

    model_config = ConfigDict(extra="forbid")

    month: str = Field(pattern=MONTH_PATTERN, description=f"YYYY-MM, {YEARS}")

    @property
    def year_month(self) -> tuple[int, int]:
        year, month = self.month.split("-")
        return int(year), int(month)


# The rule each ``GET /api/internal/books`` parameter follows: documented in the
# OpenAPI description and quoted in the 400 that names the parameter.
BOOKS_RULES = {
    "month": f"must be YYYY-MM ({YEARS})",
    "from": f"must be YYYY-MM ({YEARS})",
    "to": f"must be YYYY-MM ({YEARS})",
    "status": "must be resolved or unresolved",
    "resolver": "must be 1-32 characters: letters, digits, _ . : -",
    "q": "must be 1-200 characters, no NUL",
    "page": f"must be 1..{catalogue.PAGE_MAX}",
    "page_size": f"must be 1..{catalogue.PAGE_SIZE_MAX}",
}


def _optional(description: str, alias: str | None = None) -> Any:
    """An optional query parameter: absent means "no filter" (no ``default: null``
    in the document, since a query string has no null)."""

    def _drop_default(schema: dict[str, Any]) -> None:
        schema.pop("default", None)

    return Field(
        default=None, alias=alias, description=description, json_schema_extra=_drop_default
    )


def _no_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL: refuse it here rather than fail in the driver."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL")
    return value


ResolverName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,32}$")]
TitleSearch = Annotated[str, Field(min_length=1, max_length=200)]


class BooksQuery(BaseModel):
    """Query string of ``GET /api/internal/books`` (strings parsed as numbers, exactly)."""

    model_config = ConfigDict(extra="forbid")

    month: MonthText | SkipJsonSchema[None] = _optional(
        "only books filed under this month (a resolved book: the first month that found it; "
        "an unresolved one: its candidate's month); not with from/to; " + BOOKS_RULES["month"]
    )
    from_: MonthText | SkipJsonSchema[None] = _optional(
        "first month, inclusive (filed month, as for month); must not be after to; "
        + BOOKS_RULES["from"],
        alias="from",
    )
    to: MonthText | SkipJsonSchema[None] = _optional("last month, inclusive; " + BOOKS_RULES["to"])
    status: Literal["resolved", "unresolved"] | SkipJsonSchema[None] = _optional(
        "resolved: books with an ISBN-13; unresolved: current candidates without one (status "
        "unresolved or pending; invalid_isbn ones are never listed); default both"
    )
    resolver: ResolverName | SkipJsonSchema[None] = _optional(
        "exact resolver name (isbndb, isbndb:title, openlibrary, googlebooks, cache); "
        + BOOKS_RULES["resolver"]
    )
    q: TitleSearch | SkipJsonSchema[None] = _optional(
        "case-insensitive substring of the title; " + BOOKS_RULES["q"]
    )
    page: int = Field(
        default=1,
        ge=1,
        le=catalogue.PAGE_MAX,
        description="1-based page number; " + BOOKS_RULES["page"],
    )
    page_size: int = Field(
        default=catalogue.PAGE_SIZE_DEFAULT,
        ge=1,
        le=catalogue.PAGE_SIZE_MAX,
        description=f"books per page (default {catalogue.PAGE_SIZE_DEFAULT}); "
        + BOOKS_RULES["page_size"],
    )

    _no_nul = field_validator("q", "resolver", mode="before")(_no_nul)


# ---- responses ----------------------------------------------------------------


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleError(Response):
    year: int
    month: int
    error: str


class ExecutionSummary(Response):
    """The original's shape exactly: three counts."""

    triggered: int = Field(description="months claimed and published")
    skipped: int = Field(description="candidates left alone (a quota is spent)")
    errors: int = Field(description="months whose publish failed (see execution_errors)")


class ScheduleResponse(Response):
    dry_run: bool
    batch_size: int
    paused: bool
    months_selected: int
    months: list[ScheduledMonth]
    total_pending: int
    total_processing: int
    total_completed: int
    total_failed: int
    total_retry: int
    execution_summary: ExecutionSummary | SkipJsonSchema[None] = Field(
        default=None, description="absent in a dry run"
    )
    execution_errors: list[ScheduleError] = Field(
        default_factory=list,
        description="one per month whose publish failed (deferred a moment, no retry spent)",
    )
    blocked_until: dict[str, str] = Field(
        default_factory=dict, description="providers whose daily quota is spent, until when"
    )


class SeedResponse(Response):
    months_seeded: int = Field(description="newly inserted")
    months_existing: int
    message: str
    year_start: int
    year_end: int


class RetryResponse(Response):
    month: MonthRow
    message: str


class RegenerateResponse(Response):
    month: str = Field(description="YYYY-MM")
    generations_superseded: int = Field(description="stored generator answers set aside")
    candidates_superseded: int = Field(description="candidates set aside (kept, not used)")
    status: str = Field(description="the month's status now (pending: the scheduler takes it)")


class ReresolveQueued(Response):
    queued: Literal[True]
    task_id: str = Field(description="the backfill.reresolve task (see Flower)")
    month: str | None = Field(description="YYYY-MM, or null for every month")
    older_than_days: float | None


class PauseResponse(Response):
    paused: bool
    message: str


class Check(Response):
    ok: bool
    error: str | None = None


class HealthResponse(Response):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Check]


class ErrorBody(Response):
    code: str
    message: str
    field: str | None
    details: list[dict[str, Any]] | None = None


class ErrorResponse(Response):
    error: ErrorBody
