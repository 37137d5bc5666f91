"""calls: the escalation rule that opened a call

Revision ID: 0002_call_rule
Revises: 0001_calls
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_call_rule"
down_revision = "0001_calls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rule_name", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_call_rule_patient", ["rule_id", "patient"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_index("ix_call_rule_patient")
        batch_op.drop_column("rule_name")
        batch_op.drop_column("rule_id")
