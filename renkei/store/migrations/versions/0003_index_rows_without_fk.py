"""search index tables: no foreign key to fhir_resource

Every index row inserted fired PostgreSQL's referential-integrity trigger, a lookup of its
resource ``FOR KEY SHARE``: a transaction Bundle of 100 entries writes ~700 index rows, and
those checks were about a fifth of its time (in process, PostgreSQL 15: 84 -> 69 ms per
Bundle). Index rows are derived data: the index writer adds them in the same transaction
as the resource row, clears them when the resource changes or is deleted (a soft delete
keeps the resource row), and ``renkei reindex`` rebuilds them. Nothing deletes resource
rows, so the ``ON DELETE CASCADE`` had nothing to do. The versions and the sharing facts
keep their foreign keys.

Revision ID: 0003_core
Revises: 0002_core
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0003_core"
down_revision = "0002_core"
branch_labels = None
depends_on = None

TABLES = (
    "idx_string",
    "idx_token",
    "idx_reference",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_uri",
)
#: SQLite's constraints have no names: batch mode names the reflected ones by this
_SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in TABLES:
        if sqlite:
            with op.batch_alter_table(table, naming_convention=_SQLITE_NAMES) as batch_op:
                batch_op.drop_constraint(f"fk_{table}_resource_pk_fhir_resource", "foreignkey")
        else:
            op.drop_constraint(f"{table}_resource_pk_fkey", table, type_="foreignkey")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in TABLES:
        name = f"fk_{table}_resource_pk_fhir_resource" if sqlite else f"{table}_resource_pk_fkey"
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_foreign_key(
                name, "fhir_resource", ["resource_pk"], ["pk"], ondelete="CASCADE"
            )
