"""The report shapes the stats queries return.

Pydantic models, so the web layer serialises them unchanged and documents them
in the OpenAPI schema, and the CLI prints the very same JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from pydantic.json_schema import SkipJsonSchema

RECENT_ACTIVITY_LIMIT = 20
MonthStatusName = Literal["pending", "processing", "completed", "failed", "retry"]


class _Report(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class StatusCounts(_Report):
    """Months per status; every status is present, zero when no month has it."""

    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    retry: int = 0


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


class Activity(_Report):
    """One month in ``recent_activity``: the original's MonthStatus, plus
    ``isbns_queued`` and ``finished_at``."""

    year: int
    month: int
    status: MonthStatusName
    books_generated: int
    isbns_resolved: int
    resolution_rate: float = Field(description="percent, 0-100")
    error_message: str | SkipJsonSchema[None] = Field(
        default=None, description="the last error; left out when there is none"
    )
    isbns_queued: int = 0
    finished_at: dt.datetime | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return omit_null_error(handler(self))


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


class MonthRow(_Report):
    """One ``backfill_log`` row as the API shows it."""

    year: int
    month: int
    label: str = Field(description="YYYY-MM")
    status: str
    prompt_variant: str
    batch_size: int
    retry_count: int
    attempts: int
    books_generated: int
    isbns_resolved: int
    isbns_queued: int = Field(default=0, description="resolved ISBNs handed to enrichment")
    resolution_rate: float
    gemini_calls: int
    xai_calls: int
    isbndb_calls: int
    openlibrary_calls: int = 0
    googlebooks_calls: int = 0
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    last_retry_at: dt.datetime | None
    error_message: str | None
    job_id: str | None
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
    status: str = Field(description="pending, resolved, unresolved or invalid_isbn")
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


class GridCell(_Report):
    year: int
    month: int
    status: str
    books_generated: int
    isbns_resolved: int
    resolution_rate: float
