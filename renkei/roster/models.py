"""The roster's tables: group config as versioned plans, overrides and an append-only change log.

Nothing is ever updated in place except the group's version counter, the membership index
(a lookup of the newest plan's members) and the revocation stamps of overrides and iCal
tokens. Every plan and override row stays, so the roster as of any version can be rebuilt.
"""

from __future__ import annotations

import sqlalchemy as sa

from renkei.store.models import BigPk, Instant, Json, metadata

roster_group = sa.Table(
    "roster_group",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    #: bumped by every roster change; a snapshot is cached by (id, version)
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)

roster_plan = sa.Table(
    "roster_plan",
    metadata,
    sa.Column("group_id", sa.String(64), sa.ForeignKey("roster_group.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("effective_from", Instant, nullable=False),
    #: the normalised group definition (config_to_dict)
    sa.Column("config", Json, nullable=False),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)

roster_override = sa.Table(
    "roster_override",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("group_id", sa.String(64), sa.ForeignKey("roster_group.id"), nullable=False),
    #: the group version that created it; also its precedence (newer wins)
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("layer", sa.String(16), nullable=False),
    sa.Column("assignee", sa.String(100), nullable=True),
    sa.Column("start_at", Instant, nullable=False),
    sa.Column("end_at", Instant, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("swap_id", sa.String(64), nullable=True),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("revoked_version", sa.Integer, nullable=True),
    sa.Column("revoked_at", Instant, nullable=True),
    sa.Column("revoked_by", sa.String(200), nullable=True),
    sa.Index("ix_roster_override_group_start", "group_id", "start_at"),
)

roster_change = sa.Table(
    "roster_change",
    metadata,
    sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.String(64), sa.ForeignKey("roster_group.id"), nullable=False),
    #: the group version after the change
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("at", Instant, nullable=False),
    sa.Column("detail", Json, nullable=False),
    sa.Index("ix_roster_change_group", "group_id", "pk"),
)

roster_membership = sa.Table(
    "roster_membership",
    metadata,
    sa.Column("group_id", sa.String(64), sa.ForeignKey("roster_group.id"), primary_key=True),
    sa.Column("ref", sa.String(100), primary_key=True),
    #: clinic | doctor | coordinator
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Index("ix_roster_membership_ref", "ref"),
)

roster_ical_token = sa.Table(
    "roster_ical_token",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("group_id", sa.String(64), sa.ForeignKey("roster_group.id"), nullable=False),
    #: sha256 of the token; the token itself is shown once and never stored
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    #: PractitionerRole/... for a doctor's feed, NULL for the whole group
    sa.Column("doctor", sa.String(100), nullable=True),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("revoked_at", Instant, nullable=True),
    sa.Column("revoked_by", sa.String(200), nullable=True),
)

__all__ = [
    "roster_change",
    "roster_group",
    "roster_ical_token",
    "roster_membership",
    "roster_override",
    "roster_plan",
]
