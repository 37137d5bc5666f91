"""audit log: index the client id, the one agent column without one

Revision ID: a0002_client_index
Revises: a0001_audit
Create Date: 2026-11-30

``AuditEvent?agent=`` matches any of subject, client id, PractitionerRole and organisation;
with one of the four unindexed, PostgreSQL read the whole log instead of combining indexes.
"""

from __future__ import annotations

from alembic import op

revision = "a0002_client_index"
down_revision = "a0001_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_record_client", "audit_record", ["client_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_record_client", table_name="audit_record")
