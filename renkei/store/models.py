"""FHIR resource tables: current resources, every version, and the search indexes.

Shape after HAPI FHIR's JPA schema: one row per resource, one per version, one index table
per search-parameter type keyed by the resource's surrogate ``pk`` (cheap joins), dates
indexed as a ``[low, high]`` instant range. The content is the resource JSON as served,
including ``id`` and ``meta.versionId``/``meta.lastUpdated``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import SQLModel

metadata = SQLModel.metadata

#: BIGINT on PostgreSQL; plain INTEGER on SQLite so that it aliases the rowid.
BigPk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware instants stored in UTC on every dialect.

    SQLite keeps datetimes as text and drops the offset, so a +09:00 bound value would be
    compared as if it were UTC; converting at the seam makes both databases agree.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Instant = UtcDateTime()

resource = sa.Table(
    "fhir_resource",
    metadata,
    sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version_id", sa.Integer, nullable=False),
    sa.Column("last_updated", Instant, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("content", Json, nullable=False),
    sa.UniqueConstraint("res_type", "res_id", name="uq_fhir_resource_type_id"),
    sa.Index("ix_fhir_resource_type_updated", "res_type", "last_updated"),
)

resource_version = sa.Table(
    "fhir_resource_version",
    metadata,
    sa.Column("resource_pk", BigPk, sa.ForeignKey("fhir_resource.pk"), primary_key=True),
    sa.Column("version_id", sa.Integer, primary_key=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("last_updated", Instant, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    #: POST, PUT, PATCH or DELETE: what made this version (history Bundle entry.request).
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("content", Json, nullable=True),
    sa.Index("ix_fhir_version_updated", "last_updated"),
    sa.Index("ix_fhir_version_type_updated", "res_type", "last_updated"),
)


def _index_table(
    name: str,
    *columns: sa.Column,
    indexes: tuple[tuple[str, ...], ...],
    by_resource: tuple[str, ...],
    prefix_searched: tuple[str, ...] = (),
) -> sa.Table:
    """An index table; ``prefix_searched`` columns are matched with ``LIKE 'x%'``.

    ``ix_<table>_by_resource`` is ``(resource_pk, param, *by_resource)``: one descent finds
    a resource's value of one parameter, already in order. A sort key (``min(value)`` per
    row, fhir/search/sql.py) is then the first entry, and a filter probed per candidate
    resource reads no row of another parameter; rewriting or deleting a resource's rows
    uses its ``resource_pk`` prefix.

    PostgreSQL uses a btree for a LIKE prefix only under the "C" collation or with a
    ``varchar_pattern_ops`` index; databases are usually created with a linguistic (or
    C.UTF-8) collation, so those columns get the pattern opclass. SQLite ignores it.
    """
    table = sa.Table(
        name,
        metadata,
        # No foreign key to fhir_resource: index rows are derived data, written and cleared
        # only by the index writer in their resource's own transaction (migration
        # 0003_core says what the checks cost).
        sa.Column("resource_pk", BigPk, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("param", sa.String(100), nullable=False),
        *columns,
    )
    sa.Index(
        f"ix_{name}_by_resource",
        table.c.resource_pk,
        table.c.param,
        *(table.c[c] for c in by_resource),
    )
    for cols in indexes:
        index = sa.Index(f"ix_{name}_{'_'.join(cols)}", *(table.c[c] for c in cols))
        ops = {c: "varchar_pattern_ops" for c in cols if c in prefix_searched}
        if ops:
            index.dialect_options["postgresql"]["ops"] = ops
    return table


idx_string = _index_table(
    "idx_string",
    #: NFKC-normalised, case-folded, kana-folded form (see fhir/search/text.py).
    sa.Column("value_norm", sa.String(400), nullable=False),
    sa.Column("value_exact", sa.String(400), nullable=False),
    indexes=(("res_type", "param", "value_norm"), ("res_type", "param", "value_exact")),
    by_resource=("value_norm",),
    prefix_searched=("value_norm",),
)

idx_token = _index_table(
    "idx_token",
    sa.Column("system", sa.String(400), nullable=True),
    sa.Column("code", sa.String(400), nullable=True),
    sa.Column("text", sa.String(400), nullable=True),
    indexes=(("res_type", "param", "code", "system"),),
    by_resource=("code", "system"),
)

idx_reference = _index_table(
    "idx_reference",
    sa.Column("target_type", sa.String(64), nullable=True),
    sa.Column("target_id", sa.String(64), nullable=True),
    #: absolute or otherwise unresolvable reference, kept as written
    sa.Column("url", sa.String(1000), nullable=True),
    indexes=(
        ("res_type", "param", "target_id", "target_type"),
        ("target_id", "target_type"),
        # canonical and absolute references (urn:uuid:, https://other.example/fhir/...)
        ("res_type", "param", "url"),
    ),
    by_resource=("target_id",),
)

idx_date = _index_table(
    "idx_date",
    sa.Column("low", Instant, nullable=True),
    sa.Column("high", Instant, nullable=True),
    # both bounds in each: ``eq1940`` (low >= a AND high <= b) scans one bound's range and
    # checks the other in the index instead of fetching every row born before 1941
    indexes=(("res_type", "param", "low", "high"), ("res_type", "param", "high", "low")),
    by_resource=("low", "high"),
)

idx_number = _index_table(
    "idx_number",
    sa.Column("value", sa.Numeric, nullable=True),
    sa.Column("low", sa.Numeric, nullable=True),
    sa.Column("high", sa.Numeric, nullable=True),
    indexes=(("res_type", "param", "value"),),
    by_resource=("value",),
)

idx_quantity = _index_table(
    "idx_quantity",
    sa.Column("value", sa.Numeric, nullable=True),
    sa.Column("low", sa.Numeric, nullable=True),
    sa.Column("high", sa.Numeric, nullable=True),
    sa.Column("system", sa.String(400), nullable=True),
    sa.Column("code", sa.String(400), nullable=True),
    sa.Column("unit", sa.String(400), nullable=True),
    indexes=(("res_type", "param", "code", "value"),),
    by_resource=("value",),
)

idx_uri = _index_table(
    "idx_uri",
    sa.Column("value", sa.String(1000), nullable=False),
    indexes=(("res_type", "param", "value"),),
    by_resource=("value",),
    prefix_searched=("value",),  # :below
)

INDEX_TABLES: dict[str, sa.Table] = {
    "string": idx_string,
    "token": idx_token,
    "reference": idx_reference,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
}

__all__ = [
    "INDEX_TABLES",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_string",
    "idx_token",
    "idx_uri",
    "metadata",
    "resource",
    "resource_version",
]
