"""calls: the deliveries-due index holds only rows still to send

Revision ID: 0005_call_delivery_due_partial
Revises: 0004_call_created_index
Create Date: 2026-11-30

The old index (delivered_at, next_attempt_at) kept every given-up delivery in the range the
worker reads twice a second, for ever.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_call_delivery_due_partial"
down_revision = "0004_call_created_index"
branch_labels = None
depends_on = None

_TO_SEND = "delivered_at IS NULL AND gave_up_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("call_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_call_delivery_due")
        batch_op.create_index(
            "ix_call_delivery_due",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=sa.text(_TO_SEND),
            sqlite_where=sa.text(_TO_SEND),
        )


def downgrade() -> None:
    with op.batch_alter_table("call_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_call_delivery_due")
        batch_op.create_index(
            "ix_call_delivery_due", ["delivered_at", "next_attempt_at"], unique=False
        )
