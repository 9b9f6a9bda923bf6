"""SQLAlchemy 2 models. Alembic migrations are the only source of schema;
these declarations must match them (``alembic check`` runs in CI).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from backfill.constants import (
    CANDIDATE_STATUSES,
    MAX_YEAR,
    MIN_YEAR,
    MONTH_STATUSES,
)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK constraint's text: ``column IN ('a','b')``."""
    return f"{column} IN (" + ",".join(f"'{v}'" for v in values) + ")"


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _updated() -> Any:
    """Set by the database on insert, and to the clock of the moment by every ORM update."""
    return mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        onupdate=func.clock_timestamp(),
        nullable=False,
    )


class BackfillLog(Base):
    """One calendar month of the backfill: its state, claim and accounting."""

    __tablename__ = "backfill_log"
    __table_args__ = (
        UniqueConstraint("year", "month", name="uq_backfill_log_year_month"),
        CheckConstraint("month BETWEEN 1 AND 12", name="month_range"),
        CheckConstraint(f"year BETWEEN {MIN_YEAR} AND {MAX_YEAR}", name="year_range"),
        CheckConstraint(
            _one_of("status", MONTH_STATUSES),
            name="status_valid",
        ),
        CheckConstraint("retry_count >= 0", name="retry_count_nonnegative"),
        CheckConstraint("batch_size BETWEEN 1 AND 50", name="batch_size_range"),
        # The original's rule: only resolved ISBNs are handed to enrichment.
        CheckConstraint("isbns_queued >= 0", name="isbns_queued_nonnegative"),
        CheckConstraint("isbns_queued <= isbns_resolved", name="isbns_queued_le_resolved"),
        # Serves the scheduler's candidate query: status IN (pending, retry),
        # ordered year DESC, month DESC.
        Index(
            "idx_backfill_log_pending",
            text("year DESC"),
            text("month DESC"),
            postgresql_where=text("status IN ('pending', 'retry')"),
        ),
        Index("ix_backfill_log_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    year: Mapped[int] = mapped_column(SmallInteger)
    month: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    prompt_variant: Mapped[str] = mapped_column(String(32), server_default="baseline")
    batch_size: Mapped[int] = mapped_column(SmallInteger, server_default="20")
    retry_count: Mapped[int] = mapped_column(Integer, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    books_generated: Mapped[int] = mapped_column(Integer, server_default="0")
    isbns_resolved: Mapped[int] = mapped_column(Integer, server_default="0")
    # Resolved ISBNs handed to the enrichment queue (confirmed by the broker); see handoffs.
    isbns_queued: Mapped[int] = mapped_column(Integer, server_default="0")
    resolution_rate: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default="0")
    gemini_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    xai_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    isbndb_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    openlibrary_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    googlebooks_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_retry_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    error_message: Mapped[str | None] = mapped_column(Text)
    # claim: the job that owns the month while it is processing, until the lease ends
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # a deferred (quota) or retried month is not a candidate before this time
    not_before: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _updated()

    attempt_history: Mapped[list[MonthAttempt]] = relationship(
        back_populates="month_row", order_by="MonthAttempt.id", passive_deletes=True
    )

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


class MonthAttempt(Base):
    """One attempt at a month: when, how it ended, what it cost."""

    __tablename__ = "month_attempts"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('running','completed','retry','failed','deferred','lost','refused')",
            name="outcome_valid",
        ),
        Index("ix_month_attempts_backfill_id", "backfill_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    backfill_id: Mapped[int] = mapped_column(ForeignKey("backfill_log.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = _now()
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(16), server_default="running")
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(Text)
    gemini_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    xai_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    isbndb_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    openlibrary_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    googlebooks_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    # Generators not asked because their answer for the month was already stored.
    generators_reused: Mapped[int] = mapped_column(Integer, server_default="0")
    tokens_in: Mapped[int] = mapped_column(Integer, server_default="0")
    tokens_out: Mapped[int] = mapped_column(Integer, server_default="0")
    books_generated: Mapped[int] = mapped_column(Integer, server_default="0")
    isbns_resolved: Mapped[int] = mapped_column(Integer, server_default="0")
    # ISBNs the generators made up (bad checksum): counted here, never kept.
    invalid_isbns: Mapped[int] = mapped_column(Integer, server_default="0")
    model: Mapped[str | None] = mapped_column(Text)
    prompt_version: Mapped[str | None] = mapped_column(String(64))
    # Wall time of the attempt, kept by PostgreSQL from the two timestamps.
    duration_seconds: Mapped[Decimal | None] = mapped_column(
        Numeric(12, 3),
        Computed("round(extract(epoch from (finished_at - started_at)), 3)", persisted=True),
    )

    month_row: Mapped[BackfillLog] = relationship(back_populates="attempt_history")


class Book(Base):
    """A resolved book, one row per ISBN-13."""

    __tablename__ = "books"

    isbn13: Mapped[str] = mapped_column(String(13), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    authors: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    publisher: Mapped[str | None] = mapped_column(Text)
    publication_date: Mapped[str | None] = mapped_column(String(32))
    found_year: Mapped[int | None] = mapped_column(SmallInteger)
    found_month: Mapped[int | None] = mapped_column(SmallInteger)
    generator: Mapped[str | None] = mapped_column(String(16))
    resolver: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _updated()


class LookupCache(Base):
    """Resolution answers already paid for: never ask twice for the same ISBN or title.

    ``kind`` 'isbn': ISBNdb's answer for one ISBN-13, with the record it returned
    (so any later candidate claiming that ISBN is judged without a new request).
    ``kind`` 'title': a *verified* title key -> ISBN-13 mapping, or a not-found
    answer of the whole chain (which expires after ``ISBNDB_NOT_FOUND_TTL_DAYS``).
    """

    __tablename__ = "lookup_cache"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # 'isbn' | 'title'
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    found: Mapped[bool] = mapped_column(Boolean)
    isbn13: Mapped[str | None] = mapped_column(String(13))
    record: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    looked_up_at: Mapped[dt.datetime] = _now()


class Generation(Base):
    """One generator's stored answer for a month: paid for once, never asked again.

    At most one current (not superseded) answer per month and generator, which the
    unique partial index enforces even against two deliveries racing.
    """

    __tablename__ = "generations"
    __table_args__ = (
        Index(
            "uq_generations_current",
            "backfill_id",
            "provider",
            unique=True,
            postgresql_where=text("superseded_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    backfill_id: Mapped[int] = mapped_column(ForeignKey("backfill_log.id", ondelete="CASCADE"))
    attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("month_attempts.id", ondelete="SET NULL")
    )
    provider: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[str | None] = mapped_column(String(64))
    # The list as the generator gave it (capped at batch_size, strings bounded).
    books: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    tokens_in: Mapped[int] = mapped_column(Integer, server_default="0")
    tokens_out: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[dt.datetime] = _now()
    superseded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Candidate(Base):
    """One distinct generated book of a month, after merging, with its fate.

    ``generators`` maps each generator that named it to what it said (title,
    authors, the ISBN it claimed as given, that ISBN as a valid ISBN-13 or null).
    """

    __tablename__ = "candidates"
    __table_args__ = (
        CheckConstraint(_one_of("status", CANDIDATE_STATUSES), name="status_valid"),
        CheckConstraint("(status = 'resolved') = (isbn13 IS NOT NULL)", name="resolved_has_isbn"),
        CheckConstraint("tries >= 0", name="tries_nonnegative"),
        Index("ix_candidates_backfill_id", "backfill_id"),
        Index("ix_candidates_isbn13", "isbn13"),
        # Serves re-resolution: the open candidates, oldest try first.
        Index(
            "ix_candidates_open",
            "last_tried_at",
            postgresql_where=text("status IN ('pending', 'unresolved') AND superseded_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    backfill_id: Mapped[int] = mapped_column(ForeignKey("backfill_log.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(500))
    authors: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    publisher: Mapped[str | None] = mapped_column(String(300))
    publication_date: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(1000))
    generators: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    isbn13: Mapped[str | None] = mapped_column(
        ForeignKey("books.isbn13", ondelete="RESTRICT"), nullable=True
    )
    resolver: Mapped[str | None] = mapped_column(String(32))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    tries: Mapped[int] = mapped_column(Integer, server_default="0")
    last_tried_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Resolved by re-resolution (after the month's own attempts), for the stats.
    reresolved: Mapped[bool] = mapped_column(Boolean, server_default="false")
    superseded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _updated()


class Handoff(Base):
    """One batch (at most 100) of a month's resolved ISBNs for the enrichment queue.

    Written and committed *before* its message is published; ``sent_at`` is set
    once the broker confirmed it, in the transaction that recounts the month's
    ``isbns_queued``. A batch still unsent is published again with the same
    ``message_id`` (consumers de-duplicate on it). Regenerating a month marks its
    batches superseded: kept as history, no longer counted.
    """

    __tablename__ = "handoffs"
    __table_args__ = (
        UniqueConstraint("backfill_id", "batch", name="uq_handoffs_backfill_id_batch"),
        UniqueConstraint("message_id"),
        CheckConstraint("batch >= 1", name="batch_positive"),
        CheckConstraint("cardinality(isbns) BETWEEN 1 AND 100", name="isbns_size"),
        CheckConstraint("failures >= 0", name="failures_nonnegative"),
        # Serves the scheduler's sweep: the batches still to send.
        Index(
            "ix_handoffs_unsent",
            "backfill_id",
            postgresql_where=text("sent_at IS NULL AND superseded_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    backfill_id: Mapped[int] = mapped_column(ForeignKey("backfill_log.id", ondelete="CASCADE"))
    batch: Mapped[int] = mapped_column(Integer)  # 1-based, per month, never reused
    message_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    isbns: Mapped[list[str]] = mapped_column(ARRAY(String(13)))
    created_at: Mapped[dt.datetime] = _now()
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    failures: Mapped[int] = mapped_column(Integer, server_default="0")  # publishes that failed
    last_error: Mapped[str | None] = mapped_column(Text)
    superseded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class QuotaUsage(Base):
    """The global quota ledger: calls reserved per provider per window."""

    __tablename__ = "quota_usage"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    window: Mapped[str] = mapped_column(String(8), primary_key=True)  # day|minute|second
    window_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, server_default="0")
    exhausted: Mapped[bool] = mapped_column(Boolean, server_default="false")


class ApiCallOutcome(Base):
    """Every external request sent, counted by provider and how it ended
    (``ok``, ``not_found``, ``rate_limited``, ``quota_exhausted``, ``refused``,
    ``client_error``, ``server_error``, ``timeout``, ``network_error``, ``malformed``)."""

    __tablename__ = "api_call_outcomes"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(24), primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[dt.datetime] = _updated()


class ControlState(Base):
    """Small operator state shared by every process: paused, last schedule run."""

    __tablename__ = "control_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    updated_at: Mapped[dt.datetime] = _updated()


class AuthFailure(Base):
    """Failed authentications from one client address (``backfill.web.throttle``):
    the count in the current one-minute window, the lockout it earned, and how
    many lockouts the address has had (each doubles the next)."""

    __tablename__ = "auth_failures"
    __table_args__ = (
        CheckConstraint("failures >= 0 AND lockouts >= 0", name="counts_nonnegative"),
    )

    address: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    failures: Mapped[int] = mapped_column(Integer, server_default="0", nullable=False)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    lockouts: Mapped[int] = mapped_column(Integer, server_default="0", nullable=False)
