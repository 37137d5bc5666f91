"""collab: read receipts

Revision ID: 0001_collab
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_collab"
down_revision = None
branch_labels = ("collab",)
depends_on = "0001_core"


def upgrade() -> None:
    op.create_table(
        "collab_read_receipt",
        sa.Column("item_type", sa.String(64), primary_key=True),
        sa.Column("item_id", sa.String(64), primary_key=True),
        sa.Column("reader_role", sa.String(64), primary_key=True),
        sa.Column("reader_org", sa.String(64), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_collab_read_receipt_patient", "collab_read_receipt", ["patient_id", "reader_role"]
    )


def downgrade() -> None:
    op.drop_index("ix_collab_read_receipt_patient", table_name="collab_read_receipt")
    op.drop_table("collab_read_receipt")
