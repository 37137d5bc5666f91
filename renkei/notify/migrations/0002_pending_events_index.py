"""notify: a partial index over the subscription events still to deliver

Revision ID: 0002_pending_events_index
Revises: 0001_notify
Create Date: 2026-11-30

The pending gauge (every 5 s) and the rest-hook's work list counted pending rows through
an index led by subscription_id, which meant reading every event ever matched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_pending_events_index"
down_revision = "0001_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notify_subscription_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notify_sub_event_pending",
            ["subscription_id", "event_number"],
            unique=False,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("notify_subscription_event", schema=None) as batch_op:
        batch_op.drop_index("ix_notify_sub_event_pending")
