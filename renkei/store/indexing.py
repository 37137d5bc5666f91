"""The hook through which every write keeps the search indexes in step.

The repository calls :meth:`IndexWriter.reindex` inside the same transaction as the
resource write, so a committed resource is always searchable and a rolled-back one never.
The search package provides the real implementation; ``NullIndexWriter`` only clears rows.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from renkei.store.models import INDEX_TABLES


class IndexWriter(Protocol):
    def reindex(
        self, session: Session, pk: int, res_type: str, content: dict[str, Any] | None
    ) -> None:
        """Replace the index rows of resource ``pk``; ``content=None`` means deleted."""
        ...


def clear_index_rows(session: Session, pk: int) -> None:
    for table in INDEX_TABLES.values():
        session.execute(table.delete().where(table.c.resource_pk == pk))


class NullIndexWriter:
    """Keeps no index rows (used before the search package is wired in)."""

    def reindex(
        self, session: Session, pk: int, res_type: str, content: dict[str, Any] | None
    ) -> None:
        clear_index_rows(session, pk)
