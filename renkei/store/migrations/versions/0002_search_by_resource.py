"""search index tables: per-resource indexes carry param and value; dates both bounds

``ix_<table>_pk`` (``resource_pk`` alone) becomes ``ix_<table>_by_resource``
(``resource_pk, param, value...``): a sort key (``min(value)`` of one parameter of one
resource) is one index descent instead of a read of every index row of that resource, and
a filter probed per candidate resource skips the other parameters' rows. The date indexes
carry the other bound too, so ``birthdate=1940`` scans one bound's range and checks the
other in the index. Same number of indexes; the tables are not touched.

Revision ID: 0002_core
Revises: 0001_core
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0002_core"
down_revision = "0001_core"
branch_labels = None
depends_on = None

#: table -> the columns after (resource_pk, param) in ix_<table>_by_resource
_BY_RESOURCE = {
    "idx_string": ("value_norm",),
    "idx_token": ("code", "system"),
    "idx_reference": ("target_id",),
    "idx_date": ("low", "high"),
    "idx_number": ("value",),
    "idx_quantity": ("value",),
    "idx_uri": ("value",),
}

_DATE_OLD = {
    "ix_idx_date_res_type_param_low": ("res_type", "param", "low"),
    "ix_idx_date_res_type_param_high": ("res_type", "param", "high"),
}
_DATE_NEW = {
    "ix_idx_date_res_type_param_low_high": ("res_type", "param", "low", "high"),
    "ix_idx_date_res_type_param_high_low": ("res_type", "param", "high", "low"),
}


def upgrade() -> None:
    for table, columns in _BY_RESOURCE.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_pk")
            batch_op.create_index(
                f"ix_{table}_by_resource", ["resource_pk", "param", *columns], unique=False
            )
    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        for name in _DATE_OLD:
            batch_op.drop_index(name)
        for name, columns in _DATE_NEW.items():
            batch_op.create_index(name, list(columns), unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        for name in _DATE_NEW:
            batch_op.drop_index(name)
        for name, columns in _DATE_OLD.items():
            batch_op.create_index(name, list(columns), unique=False)
    for table in _BY_RESOURCE:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_by_resource")
            batch_op.create_index(f"ix_{table}_pk", ["resource_pk"], unique=False)
