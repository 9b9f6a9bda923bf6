"""auth_failures: failed authentications per client address, for the login throttle

One row per client address that sent a wrong cron secret (``X-Cron-Secret`` or
the dashboard's ``/login``): the failures counted in the current one-minute
window, the lockout they earned, and how many lockouts the address has had
(each doubles the next). Shared by every gunicorn worker; see
``backfill.web.throttle``.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_failures",
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lockouts", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "failures >= 0 AND lockouts >= 0", name=op.f("ck_auth_failures_counts_nonnegative")
        ),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_auth_failures")),
    )


def downgrade() -> None:
    op.drop_table("auth_failures")
