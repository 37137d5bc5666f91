"""audit log: hash-chained records, patient index, chain head, seals

Revision ID: a0001_audit
Revises:
Create Date: 2026-11-30 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0001_audit"
down_revision = None
branch_labels = ("audit",)
depends_on = "0001_core"

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_record",
        sa.Column("seq", _PK, autoincrement=False, nullable=False),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("organization_id", sa.String(64), nullable=True),
        sa.Column("practitioner_role_id", sa.String(64), nullable=True),
        sa.Column("client_id", sa.String(200), nullable=True),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("interaction", sa.String(32), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("break_glass", sa.Boolean(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_record_recorded", "audit_record", ["recorded"])
    op.create_index("ix_audit_record_subject", "audit_record", ["subject"])
    op.create_index("ix_audit_record_org", "audit_record", ["organization_id"])
    op.create_index("ix_audit_record_prole", "audit_record", ["practitioner_role_id"])
    op.create_index("ix_audit_record_btg", "audit_record", ["break_glass", "recorded"])
    op.create_table(
        "audit_patient",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("seq", _PK, autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "seq"),
    )
    op.create_index("ix_audit_patient_seq", "audit_patient", ["seq"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", _PK, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(16), nullable=True),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_seal",
        sa.Column("seq", _PK, autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )


def downgrade() -> None:
    op.drop_table("audit_seal")
    op.drop_table("audit_head")
    op.drop_index("ix_audit_patient_seq", table_name="audit_patient")
    op.drop_table("audit_patient")
    for name in ("btg", "prole", "org", "subject", "recorded"):
        op.drop_index(f"ix_audit_record_{name}", table_name="audit_record")
    op.drop_table("audit_record")
