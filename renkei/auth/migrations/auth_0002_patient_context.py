"""patient launch context on authorization codes and refresh tokens

Revision ID: auth_0002
Revises: auth_0001
Create Date: 2026-12-10 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0002"
down_revision = "auth_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("auth_code", sa.Column("patient_id", sa.String(length=64), nullable=True))
    op.add_column(
        "auth_refresh_token", sa.Column("patient_id", sa.String(length=64), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("auth_refresh_token") as batch:
        batch.drop_column("patient_id")
    with op.batch_alter_table("auth_code") as batch:
        batch.drop_column("patient_id")
