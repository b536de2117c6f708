"""The digest's bookkeeping in a table of its own (``digest_log``), instead of a fake sink
named "watcher" in ``sink_state``: the row that sink kept is moved over, so an upgraded
database keeps where its last digest ended.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables as this revision knows them (not schema.py's, which moves on).
sink_state = sa.table(
    "sink_state",
    sa.column("sink", sa.String),
    sa.column("key", sa.String),
    sa.column("value", sa.String),
    sa.column("updated_at", sa.Float),
)
digest_log = sa.table(
    "digest_log",
    sa.column("name", sa.String),
    sa.column("last_end", sa.Float),
    sa.column("updated_at", sa.Float),
)
# Where 0002 and earlier kept the end of the last digest (its repr), and the row it becomes.
OLD_SINK, OLD_KEY = "watcher", "digest.last_end"
DIGEST = "digest"


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # never written by watcher; the next digest covers its default period


def upgrade() -> None:
    op.create_table(
        "digest_log",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("last_end", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    old = (sink_state.c.sink == OLD_SINK) & (sink_state.c.key == OLD_KEY)
    bind = op.get_bind()
    row = bind.execute(sa.select(sink_state.c.value, sink_state.c.updated_at).where(old)).first()
    if row is not None and (last_end := _float(row.value)) is not None:
        bind.execute(
            digest_log.insert().values(name=DIGEST, last_end=last_end, updated_at=row.updated_at)
        )
    bind.execute(sink_state.delete().where(old))


def downgrade() -> None:
    bind = op.get_bind()
    query = sa.select(digest_log.c.last_end, digest_log.c.updated_at)
    row = bind.execute(query.where(digest_log.c.name == DIGEST)).first()
    if row is not None:
        bind.execute(
            sink_state.insert().values(
                sink=OLD_SINK, key=OLD_KEY, value=repr(row.last_end), updated_at=row.updated_at
            )
        )
    op.drop_table("digest_log")
