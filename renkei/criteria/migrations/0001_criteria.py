"""criteria: agreed escalation rules

Revision ID: 0001_criteria
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_criteria"
down_revision = None
branch_labels = ("criteria",)
depends_on = "0001_core"


def upgrade() -> None:
    op.create_table(
        "criteria_rule",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=64), nullable=False),
        sa.Column(
            "rule",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deactivated_by", sa.String(length=200), nullable=True),
        sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_criteria_rule_scope", "criteria_rule", ["scope", "scope_id", "active"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_criteria_rule_scope", table_name="criteria_rule")
    op.drop_table("criteria_rule")
