"""Sharing facts, kept in step with the Patient, CareTeam and Consent resources they come from.

Written by :class:`~renkei.access.facts.SharingFactWriter` in the same transaction as the
resource, so the policy answers "which patients may organisation X see now" with one
indexed query instead of reading resources. Periods are kept as columns and compared
with the clock at request time; statuses are applied at write time (a team that is no
longer active simply has no rows). ``access_grant`` holds duty access (urgent calls).
"""

from __future__ import annotations

import sqlalchemy as sa

from renkei.store.models import BigPk, UtcDateTime, metadata


def _fk() -> sa.ForeignKey:
    return sa.ForeignKey("fhir_resource.pk", ondelete="CASCADE")


#: Patient.managingOrganization: the organisation that registered (owns) the patient
access_patient_owner = sa.Table(
    "access_patient_owner",
    metadata,
    sa.Column("resource_pk", BigPk, _fk(), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Index("ix_access_owner_org", "organization_id", "patient_id"),
    sa.Index("ix_access_owner_patient", "patient_id"),
)

#: one row per organisation taking part in an active CareTeam of a patient
access_team_member = sa.Table(
    "access_team_member",
    metadata,
    sa.Column("id", BigPk, primary_key=True, autoincrement=True),
    sa.Column("resource_pk", BigPk, _fk(), nullable=False),
    sa.Column("careteam_id", sa.String(64), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Column("start", UtcDateTime(), nullable=True),
    sa.Column("end", UtcDateTime(), nullable=True),
    sa.Index("ix_access_team_org", "organization_id", "patient_id"),
    sa.Index("ix_access_team_pk", "resource_pk"),
)

#: one row per actor of an active, permitting sharing Consent (actor_type '*': whole team)
access_consent = sa.Table(
    "access_consent",
    metadata,
    sa.Column("id", BigPk, primary_key=True, autoincrement=True),
    sa.Column("resource_pk", BigPk, _fk(), nullable=False),
    sa.Column("consent_id", sa.String(64), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("actor_type", sa.String(32), nullable=False),
    sa.Column("actor_id", sa.String(64), nullable=False),
    sa.Column("start", UtcDateTime(), nullable=True),
    sa.Column("end", UtcDateTime(), nullable=True),
    sa.Index("ix_access_consent_patient", "patient_id"),
    sa.Index("ix_access_consent_pk", "resource_pk"),
)

#: duty access: a practitioner (role) may read a patient until ``until`` (urgent calls)
access_grant = sa.Table(
    "access_grant",
    metadata,
    sa.Column("id", BigPk, primary_key=True, autoincrement=True),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("practitioner_role_id", sa.String(64), nullable=True),
    sa.Column("subject", sa.String(200), nullable=True),
    sa.Column("start", UtcDateTime(), nullable=False),
    sa.Column("until", UtcDateTime(), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    #: what opened it, e.g. "Task/123" for an urgent call
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("revoked", UtcDateTime(), nullable=True),
    sa.Index("ix_access_grant_role", "practitioner_role_id", "patient_id"),
    sa.Index("ix_access_grant_subject", "subject", "patient_id"),
    sa.Index("ix_access_grant_source", "source"),
)

__all__ = ["access_consent", "access_grant", "access_patient_owner", "access_team_member"]
