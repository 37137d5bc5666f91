"""calls: duty access moves to the access package (access_grant); drop duty_access_grant

Revision ID: 0003_drop_duty_access_grant
Revises: 0002_call_rule
Create Date: 2026-12-01

Open calls keep no access over the upgrade: their doctors get a grant again at the next
page. Downgrading recreates the empty table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_drop_duty_access_grant"
down_revision = "0002_call_rule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("duty_access_grant", schema=None) as batch_op:
        batch_op.drop_index("ix_duty_access_role_patient")
    op.drop_table("duty_access_grant")


def downgrade() -> None:
    op.create_table(
        "duty_access_grant",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("practitioner_role", sa.String(length=200), nullable=False),
        sa.Column("patient", sa.String(length=200), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("call_id", "practitioner_role", name="uq_duty_access_call_role"),
    )
    with op.batch_alter_table("duty_access_grant", schema=None) as batch_op:
        batch_op.create_index(
            "ix_duty_access_role_patient", ["practitioner_role", "patient"], unique=False
        )
