"""The report shapes the stats queries return.

Pydantic models, so the web layer serialises them unchanged and documents them
in the OpenAPI schema, and the CLI prints the very same JSON.

A month is shown in one shape, :class:`MonthSummary` (the original system's
MonthStatus), extended where a view shows more: :class:`Activity` (stats' recent
activity), :class:`GridCell` (the dashboard), :class:`MonthRow` (the whole row)
and :class:`ScheduledMonth` (a month the scheduler dispatched). Each is built by
:meth:`MonthSummary.of` from a ``backfill_log`` row.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.json_schema import SkipJsonSchema

from backfill.constants import CandidateStatus, MonthStatus

RECENT_ACTIVITY_LIMIT = 20


class _Report(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class StatusCounts(_Report):
    """Months per status; every status is present, zero when no month has it."""

    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    retry: int = 0


class BookTotals(_Report):
    """Books generated and ISBNs resolved over some months (the sums of their counters)."""

    books_generated: int
    isbns_resolved: int


class Progress(_Report):
    total_books_generated: int
    total_isbns_resolved: int
    overall_resolution_rate: float = Field(description="percent, 0 when nothing was generated")
    total_unresolved: int = Field(
        description="current candidates (not superseded) that no resolver found"
    )
    total_reresolved: int = Field(
        description="candidates resolved by re-resolution, all time (superseded ones included)"
    )
    generator_calls_saved: int = Field(
        description="generator calls not made because the month's answer was stored"
    )
    total_isbns_queued: int = Field(
        description="resolved ISBNs handed to the enrichment queue (the broker confirmed them)"
    )


def omit_null_error(data: dict[str, Any]) -> dict[str, Any]:
    """The original's MonthStatus has ``error_message`` as an optional *string*: a
    month without an error leaves it out rather than sending null."""
    if data.get("error_message") is None:
        data.pop("error_message", None)
    return data


def _percent(value: Any) -> Any:
    """``backfill_log.resolution_rate`` (a NUMERIC(5,2), or NULL) as a float."""
    if value is None:
        return 0.0
    return float(value) if isinstance(value, Decimal) else value


def _job_id(value: Any) -> Any:
    """A job id (a UUID in ``backfill_log``) as text; no job is null."""
    return str(value) if value else None


def _no_default(schema: dict[str, Any]) -> None:
    # A field left out when null documents no ``default: null`` (its type is string).
    schema.pop("default", None)


Percent = Annotated[float, BeforeValidator(_percent), Field(description="percent, 0-100")]
JobId = Annotated[str | None, BeforeValidator(_job_id)]


class MonthSummary(_Report):
    """One month as the original system's MonthStatus shows it (year, month, status,
    counters, the last error), plus ``isbns_queued``. The other month shapes extend it.

    ``error_message`` is left out when there is none (the original's optional
    string), except in a subclass that sets ``_omit_null_error = False``.
    """

    # Send a null error_message as null rather than leave it out.
    _omit_null_error: ClassVar[bool] = True
    # The key order a subclass has always sent, when its fields' order differs.
    _wire_order: ClassVar[tuple[str, ...]] = ()

    year: int
    month: int
    status: MonthStatus
    books_generated: int
    isbns_resolved: int
    resolution_rate: Percent
    error_message: str | SkipJsonSchema[None] = Field(
        default=None,
        description="the last error; left out when there is none",
        json_schema_extra=_no_default,
    )
    isbns_queued: int = Field(
        default=0, description="resolved ISBNs handed to the enrichment queue"
    )

    @classmethod
    def of(cls, row: object, **extra: Any) -> Self:
        """This shape of the month ``row`` (a :class:`backfill.models.BackfillLog`, or
        anything with its attribute names); ``extra`` gives the fields the row does
        not have (``finished_at``)."""
        values = {
            name: getattr(row, name)
            for name in cls.model_fields
            if name not in extra and hasattr(row, name)
        }
        return cls.model_validate({**values, **extra})

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler):
        # No return annotation on purpose: with one, pydantic documents the
        # serialised shape as that type; without, the OpenAPI schema is the model's.
        data = handler(self)
        if self._omit_null_error:
            omit_null_error(data)
        if self._wire_order:
            data = {key: data[key] for key in self._wire_order if key in data} | data
        return data


class Activity(MonthSummary):
    """One month in ``recent_activity``: the original's MonthStatus, plus
    ``isbns_queued`` and ``finished_at``."""

    finished_at: dt.datetime | None = None


class ScheduledMonth(MonthSummary):
    """A month a schedule run (or an operator) dispatched, or a dry run would: the
    original's MonthStatus, plus ``job_id``, ``retry_count`` and ``isbns_queued``.
    What :mod:`backfill.scheduler` returns and the schedule endpoint sends."""

    # The order this endpoint has always sent: job_id after status.
    _wire_order = (
        "year",
        "month",
        "status",
        "job_id",
        "books_generated",
        "isbns_resolved",
        "resolution_rate",
        "error_message",
        "retry_count",
        "isbns_queued",
    )

    job_id: JobId = Field(description="the dispatched job (null in a dry run)")
    retry_count: int

    @property
    def label(self) -> str:
        """``YYYY-MM``."""
        return f"{self.year:04d}-{self.month:02d}"


class ApiCalls(_Report):
    gemini: int = 0
    xai: int = 0
    isbndb: int = 0
    openlibrary: int = 0
    googlebooks: int = 0


class QuotaToday(_Report):
    used: int
    limit: int
    remaining: int
    exhausted: bool
    resets_at: str


class StatsReport(_Report):
    """``GET /api/internal/backfill-stats`` and ``backfill stats --json``."""

    total_months: int
    by_status: StatusCounts
    progress: Progress
    recent_activity: list[Activity] = Field(max_length=RECENT_ACTIVITY_LIMIT)
    api_calls: ApiCalls
    quota_today: dict[str, QuotaToday]
    paused: bool


class MonthRow(MonthSummary):
    """One ``backfill_log`` row as the API shows it (``error_message`` is null when
    there is none)."""

    _omit_null_error = False
    _wire_order = (
        "year",
        "month",
        "label",
        "status",
        "prompt_variant",
        "batch_size",
        "retry_count",
        "attempts",
        "books_generated",
        "isbns_resolved",
        "isbns_queued",
        "resolution_rate",
        "gemini_calls",
        "xai_calls",
        "isbndb_calls",
        "openlibrary_calls",
        "googlebooks_calls",
        "started_at",
        "completed_at",
        "last_retry_at",
        "error_message",
        "job_id",
        "lease_expires_at",
        "not_before",
        "updated_at",
    )

    label: str = Field(description="YYYY-MM")
    prompt_variant: str
    batch_size: int
    retry_count: int
    attempts: int
    gemini_calls: int
    xai_calls: int
    isbndb_calls: int
    openlibrary_calls: int = 0
    googlebooks_calls: int = 0
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    last_retry_at: dt.datetime | None
    error_message: str | None
    job_id: JobId
    lease_expires_at: dt.datetime | None
    not_before: dt.datetime | None
    updated_at: dt.datetime


class Attempt(_Report):
    """One row of ``month_attempts``."""

    attempt: int
    job_id: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_seconds: float | None
    outcome: str
    error: str | None
    worker: str | None
    gemini_calls: int
    xai_calls: int
    isbndb_calls: int
    openlibrary_calls: int = 0
    googlebooks_calls: int = 0
    tokens_in: int
    tokens_out: int
    books_generated: int
    isbns_resolved: int
    invalid_isbns: int
    generators_reused: int = Field(default=0, description="generator calls saved by reuse")
    model: str | None
    prompt_version: str | None


class CandidateOut(_Report):
    """One generated book of a month and its fate (``backfill.candidates.CandidateView``)."""

    id: int
    title: str
    authors: list[str]
    publisher: str | None
    publication_date: str | None
    status: CandidateStatus
    isbn13: str | None
    resolver: str | None = Field(description="what found the ISBN (null until resolved)")
    generators: list[str] = Field(description="the generators that named it")
    claimed_isbns: dict[str, list[str]] = Field(description="ISBNs each generator claimed")
    evidence: dict[str, Any]
    tries: int
    last_tried_at: dt.datetime | None
    reresolved: bool = Field(description="resolved by re-resolution")
    superseded: bool


class MonthDetail(_Report):
    """A month, its attempt history (oldest first), the last error seen and its
    current candidates (resolved or not)."""

    month: MonthRow
    attempts: list[Attempt]
    last_error: str | None
    candidates: list[CandidateOut] = Field(default_factory=list)


class MonthsPage(_Report):
    months: list[MonthRow]
    total: int = Field(description="months matching the filters, all pages")
    limit: int
    offset: int


class GridCell(MonthSummary):
    """One month in the dashboard's grid."""
