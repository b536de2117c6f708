"""The one SQLAlchemy Core schema every store shares."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

# The states of a delivery (``deliveries.state``). SILENCED: a silence kept the transition
# from the sink (recorded, never sent; the dispatcher only takes PENDING).
PENDING, DELIVERED, DEAD, SILENCED = "pending", "delivered", "dead", "silenced"
DELIVERY_STATES = (PENDING, DELIVERED, DEAD, SILENCED)


def _time(name: str, *, optional: bool = False) -> sa.Column[float]:
    """A point in time: Unix seconds, as every table keeps them."""
    return sa.Column(name, sa.Float, nullable=optional)


def _source(*, key: bool = False) -> sa.Column[str]:
    """A source's name, as the config gives it."""
    return sa.Column("source", sa.String(64), primary_key=key, nullable=False)


def _job_id(*, key: bool = False, optional: bool = False) -> sa.Column[str]:
    """A job's id, as its API gives it."""
    return sa.Column("job_id", sa.String(255), primary_key=key, nullable=optional)


def _json(name: str) -> sa.Column[Any]:
    """A document (JSON on SQLite, json on PostgreSQL)."""
    return sa.Column(name, sa.JSON, nullable=False)


snapshots = sa.Table(
    "snapshots",
    metadata,
    _source(key=True),
    _job_id(key=True),
    sa.Column("status", sa.String(128), nullable=False),
    sa.Column("terminal", sa.Boolean, nullable=False),
    _json("data"),
    _time("updated_at"),
    sa.Index("ix_snapshots_active", "source", "terminal"),
)

cursors = sa.Table(
    "cursors",
    metadata,
    _source(key=True),
    _json("data"),
    _time("last_poll_at"),
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
    _source(),
    _job_id(optional=True),
    sa.Column("type", sa.String(128), nullable=False),
    _json("body"),
    _time("detected_at"),
)

# One row per (transition, sink) the routes chose.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("seq", sa.Integer, sa.ForeignKey("transitions.seq"), primary_key=True),
    sa.Column("sink", sa.String(64), primary_key=True),
    # source + job (or the transition itself when it concerns no job): the unit of ordering.
    sa.Column("job_key", sa.String(330), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # one of DELIVERY_STATES
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    _time("next_attempt_at"),
    _time("created_at"),
    _time("updated_at"),
    sa.Column("last_error", sa.String(500)),
    # A replica sending the delivery holds it until claim_until (a lease: a replica killed
    # mid-send leaves it to expire, then another one retries).
    sa.Column("claimed_by", sa.String(128)),
    _time("claim_until", optional=True),
    sa.Index("ix_deliveries_due", "state", "next_attempt_at"),
    sa.Index("ix_deliveries_order", "sink", "job_key", "state", "seq"),
)

# Alerts of time-based rules (stalled, overrun): one row per firing condition, so that it
# fires once, repeats on schedule and resolves once, across restarts.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the firing transition's id
    _source(),
    _job_id(),
    sa.Column("rule", sa.String(64), nullable=False),
    _time("fired_at"),
    _time("last_sent_at"),
    sa.Column("repeats", sa.Integer, nullable=False),
    _time("resolved_at", optional=True),
    _json("data"),
    sa.Index("ix_alerts_open", "source", "resolved_at"),
)

# What sinks must remember across restarts (e.g. the Slack thread of each job).
sink_state = sa.Table(
    "sink_state",
    metadata,
    sa.Column("sink", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(330), primary_key=True),
    sa.Column("value", sa.String(1000), nullable=False),
    _time("updated_at"),
)

# Where each digest's last period ended, so that the next one starts there. One digest today
# (its row is named DIGEST); the name leaves room for more.
DIGEST = "digest"
digest_log = sa.Table(
    "digest_log",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    _time("last_end"),
    _time("updated_at"),
)

# Runtime silences (``watcher silence``, Slack's buttons): every replica reads them.
silences = sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    _json("matchers"),  # key -> glob
    _time("starts_at"),
    _time("ends_at", optional=True),  # None: until resolved, no time cap
    sa.Column("resolved_source", sa.String(64)),  # "until resolved": the job it is bound to
    sa.Column("resolved_job_id", sa.String(255)),
    sa.Column("comment", sa.String(1000), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    _time("created_at"),
    _time("ended_at", optional=True),
    sa.Column("ended_by", sa.String(255)),
    sa.Column("end_reason", sa.String(255)),
    sa.Index("ix_silences_open", "ended_at"),
)
