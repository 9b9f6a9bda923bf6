"""enrichment hand-off: backfill_log.isbns_queued and the handoffs table

* ``backfill_log.isbns_queued``: the month's resolved ISBNs handed to the
  enrichment queue (the original system's column, same name and meaning), never
  more than ``isbns_resolved``.
* ``handoffs``: one row per batch (at most 100 ISBNs) of a month's hand-off.
  The row is committed before its message is published and marked ``sent_at``
  once the broker confirmed it, so a crash in between re-sends the batch with
  the same ``message_id``. ``superseded_at`` is set when the month is
  regenerated: the history is kept, the month's hand-off starts over.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "backfill_log",
        sa.Column("isbns_queued", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_backfill_log_isbns_queued_nonnegative"), "backfill_log", "isbns_queued >= 0"
    )
    op.create_check_constraint(
        op.f("ck_backfill_log_isbns_queued_le_resolved"),
        "backfill_log",
        "isbns_queued <= isbns_resolved",
    )
    op.create_table(
        "handoffs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("backfill_id", sa.BigInteger(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("isbns", postgresql.ARRAY(sa.String(length=13)), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("batch >= 1", name=op.f("ck_handoffs_batch_positive")),
        sa.CheckConstraint(
            "cardinality(isbns) BETWEEN 1 AND 100", name=op.f("ck_handoffs_isbns_size")
        ),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_handoffs_failures_nonnegative")),
        sa.ForeignKeyConstraint(
            ["backfill_id"],
            ["backfill_log.id"],
            name=op.f("fk_handoffs_backfill_id_backfill_log"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoffs")),
        sa.UniqueConstraint("backfill_id", "batch", name="uq_handoffs_backfill_id_batch"),
        sa.UniqueConstraint("message_id", name=op.f("uq_handoffs_message_id")),
    )
    op.create_index(
        "ix_handoffs_unsent",
        "handoffs",
        ["backfill_id"],
        postgresql_where=sa.text("sent_at IS NULL AND superseded_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("handoffs")
    op.drop_constraint(op.f("ck_backfill_log_isbns_queued_le_resolved"), "backfill_log")
    op.drop_constraint(op.f("ck_backfill_log_isbns_queued_nonnegative"), "backfill_log")
    op.drop_column("backfill_log", "isbns_queued")
