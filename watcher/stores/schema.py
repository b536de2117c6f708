"""The one SQLAlchemy Core schema every store shares."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# The states of a delivery (``deliveries.state``).
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(255), primary_key=True),
    sa.Column("status", sa.String(128), nullable=False),
    sa.Column("terminal", sa.Boolean, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_snapshots_active", "source", "terminal"),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("last_poll_at", sa.Float, nullable=False),
    # Bumped by every commit of the source's cycle; a commit names the version its cycle
    # started from, so a replica that lost the source cannot overwrite newer state.
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
)

# The outbox: one row per transition, in detection order (seq).
transitions = sa.Table(
    "transitions",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("job_id", sa.String(255)),
    sa.Column("type", sa.String(128), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("detected_at", sa.Float, nullable=False),
)

# One row per (transition, sink) the routes chose.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("seq", sa.Integer, sa.ForeignKey("transitions.seq"), primary_key=True),
    sa.Column("sink", sa.String(64), primary_key=True),
    # source + job (or the transition itself when it concerns no job): the unit of ordering.
    sa.Column("job_key", sa.String(330), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # PENDING | DELIVERED | DEAD
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.String(500)),
    # A replica sending the delivery holds it until claim_until (a lease: a replica killed
    # mid-send leaves it to expire, then another one retries).
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("claim_until", sa.Float),
    sa.Index("ix_deliveries_due", "state", "next_attempt_at"),
    sa.Index("ix_deliveries_order", "sink", "job_key", "state", "seq"),
)

# Alerts of time-based rules (stalled, overrun): one row per firing condition, so that it
# fires once, repeats on schedule and resolves once, across restarts.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the firing transition's id
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("job_id", sa.String(255), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("fired_at", sa.Float, nullable=False),
    sa.Column("last_sent_at", sa.Float, nullable=False),
    sa.Column("repeats", sa.Integer, nullable=False),
    sa.Column("resolved_at", sa.Float),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_alerts_open", "source", "resolved_at"),
)

# What sinks must remember across restarts (e.g. the Slack thread of each job).
sink_state = sa.Table(
    "sink_state",
    metadata,
    sa.Column("sink", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(330), primary_key=True),
    sa.Column("value", sa.String(1000), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Where each digest's last period ended, so that the next one starts there. One digest today
# (its row is named DIGEST); the name leaves room for more.
DIGEST = "digest"
digest_log = sa.Table(
    "digest_log",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("last_end", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
