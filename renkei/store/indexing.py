"""The hook through which every write keeps the search indexes in step.

The repository calls :meth:`IndexWriter.reindex` inside the same transaction as the
resource write, so a committed resource is always searchable and a rolled-back one never.
The search package provides the real implementation; ``NullIndexWriter`` only clears rows.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.store.models import INDEX_TABLES


class IndexWriter(Protocol):
    """Keeps a resource's index rows in step with its current version.

    An implementation may also define ``index_new(session, pk, res_type, content)``, called
    instead of ``reindex`` for a resource just created (it has no rows to delete); the
    repository uses it when present, which saves a DELETE per index table on every create.
    """

    def reindex(
        self, session: Session, pk: int, res_type: str, content: dict[str, Any] | None
    ) -> None:
        """Replace the index rows of resource ``pk``; ``content=None`` means deleted."""
        ...


def clear_index_rows(session: Session, pk: int) -> None:
    """Delete every index row of resource ``pk``: one statement on PostgreSQL (a chain of
    data-modifying CTEs), one per index table on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_clear_all_statement(), {"pk": pk})
        return
    for table in INDEX_TABLES.values():
        session.execute(table.delete().where(table.c.resource_pk == pk))


@cache
def _clear_all_statement() -> sa.TextClause:
    parts = [
        f"d{n} AS (DELETE FROM {table.name} WHERE resource_pk = :pk)"
        for n, table in enumerate(INDEX_TABLES.values())
    ]
    return sa.text(f"WITH {', '.join(parts)} SELECT 1")


class NullIndexWriter:
    """Keeps no index rows (used before the search package is wired in)."""

    def reindex(
        self, session: Session, pk: int, res_type: str, content: dict[str, Any] | None
    ) -> None:
        clear_index_rows(session, pk)

    def index_new(self, session: Session, pk: int, res_type: str, content: dict[str, Any]) -> None:
        return None
