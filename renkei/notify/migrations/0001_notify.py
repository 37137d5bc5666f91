"""notify: outbox, subscriptions, subscription events, websocket binding tokens

Revision ID: 0001_notify
Revises:
Create Date: 2026-11-30 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_notify"
down_revision = None
branch_labels = ("notify",)
depends_on = "0001_core"

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notify_outbox",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=True),
        sa.Column("res_id", sa.String(64), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("patient", sa.String(140), nullable=True),
        sa.Column("audience", _JSON, nullable=False),
        sa.Column("data", _JSON, nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("sequenced_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index(
        "ix_notify_outbox_unsequenced",
        "notify_outbox",
        ["id"],
        postgresql_where=sa.text("seq IS NULL"),
        sqlite_where=sa.text("seq IS NULL"),
    )
    op.create_table(
        "notify_subscription",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(400), nullable=False),
        sa.Column("filters", _JSON, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(1000), nullable=True),
        sa.Column("headers", _JSON, nullable=False),
        sa.Column("content", sa.String(16), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("heartbeat_seconds", sa.Integer(), nullable=True),
        sa.Column("max_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("base_url", sa.String(400), nullable=False),
        sa.Column("owner", _JSON, nullable=True),
        sa.Column("events_since_start", sa.BigInteger(), nullable=False),
        sa.Column("start_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=True),
        sa.Column("failing_since", _TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_delivered_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "notify_subscription_event",
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("event_number", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["notify_subscription.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("subscription_id", "event_number"),
    )
    op.create_index("ix_notify_sub_event_seq", "notify_subscription_event", ["seq"])
    op.create_index(
        "ix_notify_sub_event_status",
        "notify_subscription_event",
        ["subscription_id", "status", "event_number"],
    )
    op.create_table(
        "notify_binding_token",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("subscription_ids", _JSON, nullable=False),
        sa.Column("owner", _JSON, nullable=True),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )


def downgrade() -> None:
    op.drop_table("notify_binding_token")
    op.drop_index("ix_notify_sub_event_status", table_name="notify_subscription_event")
    op.drop_index("ix_notify_sub_event_seq", table_name="notify_subscription_event")
    op.drop_table("notify_subscription_event")
    op.drop_table("notify_subscription")
    op.drop_index("ix_notify_outbox_unsequenced", table_name="notify_outbox")
    op.drop_table("notify_outbox")
