"""The criteria package's table: the agreed escalation rules, per facility or per patient.

A rule row is data a care facility (or a patient's care team) and the doctor agreed on
(協力医療機関との事前の取り決め). ``rule`` holds the rule's normal JSON form
(:meth:`renkei.criteria.rules.Rule.to_json`); a rule is never deleted, only deactivated,
so a call opened by it can always name it.
"""

from __future__ import annotations

import sqlalchemy as sa

from renkei.store.models import Json, UtcDateTime, metadata

#: ``scope`` values: a facility's rules apply to every patient whose active CareTeam
#: includes the organisation; a patient's rules to that patient
SCOPES = ("organization", "patient")

criteria_rule = sa.Table(
    "criteria_rule",
    metadata,
    #: server-assigned; also the rule's ``id`` inside ``rule``
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("scope", sa.String(16), nullable=False),
    #: bare logical id of the Organization or Patient
    sa.Column("scope_id", sa.String(64), nullable=False),
    sa.Column("rule", Json, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("deactivated_by", sa.String(200), nullable=True),
    sa.Column("deactivated_at", UtcDateTime(), nullable=True),
    sa.Index("ix_criteria_rule_scope", "scope", "scope_id", "active"),
)

__all__ = ["SCOPES", "criteria_rule"]
