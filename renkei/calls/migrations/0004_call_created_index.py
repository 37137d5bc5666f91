"""calls: index the call list's order (newest first)

Revision ID: 0004_call_created_index
Revises: 0003_drop_duty_access_grant
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0004_call_created_index"
down_revision = "0003_drop_duty_access_grant"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.create_index("ix_call_created", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_index("ix_call_created")
