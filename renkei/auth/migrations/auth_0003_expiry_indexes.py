"""auth: index the expiry columns the purge deletes by, and refresh tokens by user

Revision ID: auth_0003
Revises: auth_0002
Create Date: 2026-11-30

purge_expired runs on sign-ins and private_key_jwt token requests; without these indexes
each run scanned four tables under write locks (refresh tokens are kept 15 days).
Disabling a user revokes their refresh tokens by user_id.
"""

from __future__ import annotations

from alembic import op

revision = "auth_0003"
down_revision = "auth_0002"
branch_labels = None
depends_on = None

_EXPIRING = ("auth_assertion_jti", "auth_revoked_jti", "auth_code", "auth_refresh_token")


def upgrade() -> None:
    for table in _EXPIRING:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_expires_at"), ["expires_at"])
    with op.batch_alter_table("auth_refresh_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_refresh_token_user_id"), ["user_id"])


def downgrade() -> None:
    with op.batch_alter_table("auth_refresh_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_refresh_token_user_id"))
    for table in reversed(_EXPIRING):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_expires_at"))
