"""month_attempts: invalid_isbns and duration_seconds

A generated ISBN that fails its checksum is a hallucination: counted on the
attempt, never kept. The attempt's wall time is kept by PostgreSQL itself.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "month_attempts",
        sa.Column("invalid_isbns", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "month_attempts",
        sa.Column(
            "duration_seconds",
            sa.Numeric(12, 3),
            sa.Computed("round(extract(epoch from (finished_at - started_at)), 3)", persisted=True),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_column("month_attempts", "duration_seconds")
    op.drop_column("month_attempts", "invalid_isbns")
