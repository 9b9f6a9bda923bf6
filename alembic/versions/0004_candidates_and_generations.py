"""candidates and generations: every generated book kept, every generator answer paid once

* ``generations``: one generator's answer for a month, stored in the same
  transaction that records the call, so a retry never asks again.
* ``candidates``: one row per distinct generated book per month, with its fate.
* ``lookup_cache.record``: the ISBNdb record an ISBN lookup returned, so a later
  candidate claiming that ISBN is judged without a new request.
* Call counters for the two keyless resolvers (Open Library, Google Books), and
  ``month_attempts.generators_reused`` (calls saved by reuse).

Cached mappings made under the old rules are invalidated here: a title key ->
ISBN mapping was taken when the titles scored >= 0.6 (so "The Road" could map
to "The Road to Wigan Pier"), and a found ISBN lookup kept no record to judge it
again by. Not-found answers stay and expire as before.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def upgrade() -> None:
    for table in ("backfill_log", "month_attempts"):
        for column in ("openlibrary_calls", "googlebooks_calls"):
            op.add_column(
                table, sa.Column(column, sa.Integer(), server_default="0", nullable=False)
            )
    op.add_column(
        "month_attempts",
        sa.Column("generators_reused", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("lookup_cache", sa.Column("record", postgresql.JSONB(), nullable=True))
    op.execute("DELETE FROM lookup_cache WHERE found")

    op.create_table(
        "generations",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("backfill_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt_id", sa.BigInteger(), nullable=True),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("prompt_version", sa.String(length=64), nullable=True),
        sa.Column("books", postgresql.JSONB(), server_default="[]", nullable=False),
        sa.Column("tokens_in", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tokens_out", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["backfill_id"],
            ["backfill_log.id"],
            name=op.f("fk_generations_backfill_id_backfill_log"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["month_attempts.id"],
            name=op.f("fk_generations_attempt_id_month_attempts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generations")),
    )
    op.create_index(
        "uq_generations_current",
        "generations",
        ["backfill_id", "provider"],
        unique=True,
        postgresql_where=sa.text("superseded_at IS NULL"),
    )

    op.create_table(
        "candidates",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("backfill_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("authors", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("publisher", sa.String(length=300), nullable=True),
        sa.Column("publication_date", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column("generators", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("isbn13", sa.String(length=13), nullable=True),
        sa.Column("resolver", sa.String(length=32), nullable=True),
        sa.Column("evidence", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.Column("tries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_tried_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reresolved", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending','resolved','unresolved','invalid_isbn')",
            name=op.f("ck_candidates_status_valid"),
        ),
        sa.CheckConstraint(
            "(status = 'resolved') = (isbn13 IS NOT NULL)",
            name=op.f("ck_candidates_resolved_has_isbn"),
        ),
        sa.CheckConstraint("tries >= 0", name=op.f("ck_candidates_tries_nonnegative")),
        sa.ForeignKeyConstraint(
            ["backfill_id"],
            ["backfill_log.id"],
            name=op.f("fk_candidates_backfill_id_backfill_log"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["isbn13"],
            ["books.isbn13"],
            name=op.f("fk_candidates_isbn13_books"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidates")),
    )
    op.create_index("ix_candidates_backfill_id", "candidates", ["backfill_id"])
    op.create_index("ix_candidates_isbn13", "candidates", ["isbn13"])
    op.create_index(
        "ix_candidates_open",
        "candidates",
        ["last_tried_at"],
        postgresql_where=sa.text("status IN ('pending', 'unresolved') AND superseded_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("candidates")
    op.drop_table("generations")
    op.drop_column("lookup_cache", "record")
    op.drop_column("month_attempts", "generators_reused")
    for table in ("backfill_log", "month_attempts"):
        for column in ("googlebooks_calls", "openlibrary_calls"):
            op.drop_column(table, column)
