"""sharing facts (owner, care-team members, consents) and duty-access grants

Revision ID: s0001_access
Revises:
Create Date: 2026-11-30 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0001_access"
down_revision = None
branch_labels = ("access",)
depends_on = "0001_core"

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _fk() -> sa.ForeignKey:
    return sa.ForeignKey("fhir_resource.pk", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "access_patient_owner",
        sa.Column("resource_pk", _PK, _fk(), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("resource_pk"),
    )
    op.create_index(
        "ix_access_owner_org", "access_patient_owner", ["organization_id", "patient_id"]
    )
    op.create_index("ix_access_owner_patient", "access_patient_owner", ["patient_id"])
    op.create_table(
        "access_team_member",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("resource_pk", _PK, _fk(), nullable=False),
        sa.Column("careteam_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_team_org", "access_team_member", ["organization_id", "patient_id"])
    op.create_index("ix_access_team_pk", "access_team_member", ["resource_pk"])
    op.create_table(
        "access_consent",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("resource_pk", _PK, _fk(), nullable=False),
        sa.Column("consent_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("actor_type", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_consent_patient", "access_consent", ["patient_id"])
    op.create_index("ix_access_consent_pk", "access_consent", ["resource_pk"])
    op.create_table(
        "access_grant",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("practitioner_role_id", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("source", sa.String(200), nullable=True),
        sa.Column("revoked", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_grant_role", "access_grant", ["practitioner_role_id", "patient_id"])
    op.create_index("ix_access_grant_subject", "access_grant", ["subject", "patient_id"])


def downgrade() -> None:
    op.drop_table("access_grant")
    op.drop_table("access_consent")
    op.drop_table("access_team_member")
    op.drop_table("access_patient_owner")
