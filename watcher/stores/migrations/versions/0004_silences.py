"""Runtime silences (``silences``), read by every replica. Deliveries a silence keeps from
their sink are rows in state ``silenced`` (a new value of a free-text column: no change).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", sa.Float(), nullable=False),
        sa.Column("ends_at", sa.Float(), nullable=True),
        sa.Column("resolved_source", sa.String(length=64), nullable=True),
        sa.Column("resolved_job_id", sa.String(length=255), nullable=True),
        sa.Column("comment", sa.String(length=1000), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("ended_by", sa.String(length=255), nullable=True),
        sa.Column("end_reason", sa.String(length=255), nullable=True),
    )
    op.create_index("ix_silences_open", "silences", ["ended_at"])


def downgrade() -> None:
    # Silenced deliveries were never sent and never will be: an older watcher must not
    # pick them up as something it does not know; they go with the table.
    op.execute("DELETE FROM deliveries WHERE state = 'silenced'")
    op.drop_index("ix_silences_open", table_name="silences")
    op.drop_table("silences")
