"""access: index duty grants by what opened them (urgent calls revoke by source)

Revision ID: s0002_access_grant_source
Revises: s0001_access
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "s0002_access_grant_source"
down_revision = "s0001_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_access_grant_source", "access_grant", ["source"])


def downgrade() -> None:
    op.drop_index("ix_access_grant_source", table_name="access_grant")
