"""The :class:`~renkei.store.indexing.IndexWriter` that keeps every search index in step.

Called by the repository inside the write's own transaction: the resource's old rows go,
the rows :func:`~renkei.fhir.search.extract.extract_rows` finds in the new content come in
(deferred to one multi-row INSERT per table for the whole unit of work, see
:mod:`renkei.store.pending`). A committed resource is therefore always searchable, a
rolled-back one never; searches flush the deferred rows first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.fhir.search.dates import DEFAULT_ZONE
from renkei.fhir.search.extract import extract_rows
from renkei.store import pending
from renkei.store.indexing import clear_index_rows
from renkei.store.models import INDEX_TABLES, resource

log = logging.getLogger(__name__)


_TABLES = frozenset(INDEX_TABLES.values())


class SearchIndexWriter:
    """Indexes every string, token, reference, date, number, quantity and uri parameter.

    ``zone`` is where a date or dateTime written without an offset is read
    (``Settings.default_timezone``; Asia/Tokyo by default).
    """

    def __init__(self, zone: tzinfo = DEFAULT_ZONE) -> None:
        self.zone = zone

    def reindex(
        self, session: Session, pk: int, res_type: str, content: dict[str, Any] | None
    ) -> None:
        """Replace the rows of ``pk``.

        The repository writes version 1 only into a row it has just inserted, whose index is
        necessarily empty, so the deletes are skipped then (creates are the common write).
        """
        self.replace(session, pk, res_type, content, clear=not is_first_version(content))

    def replace(
        self,
        session: Session,
        pk: int,
        res_type: str,
        content: dict[str, Any] | None,
        *,
        clear: bool = True,
    ) -> None:
        """Delete the rows of ``pk`` (unless ``clear`` is False) and insert ``content``'s."""
        if clear or content is None:
            clear_index_rows(session, pk)
            pending.discard(
                session, lambda table, row: table in _TABLES and row["resource_pk"] == pk
            )
        if content is None:
            return
        rows = extract_rows(res_type, content, zone=self.zone, pk=pk)
        for kind, kind_rows in rows.items():
            if kind_rows:
                pending.defer(session, INDEX_TABLES[kind], kind_rows)


def is_first_version(content: dict[str, Any] | None) -> bool:
    """Version 1 lives in a row inserted by this very write: it has no index rows yet."""
    meta = content.get("meta") if isinstance(content, dict) else None
    return isinstance(meta, dict) and meta.get("versionId") == "1"


def reindex_all(
    session_factory: Any,
    writer: SearchIndexWriter,
    *,
    res_type: str | None = None,
    batch_size: int = 500,
) -> int:
    """Re-extract the rows of every current resource, one transaction per batch.

    ``session_factory`` is ``Database.session``. Deleted resources get their rows cleared.
    Returns how many resources were re-indexed (deleted ones not counted).
    """
    done = 0
    last_pk = 0
    while True:
        with session_factory(write=True) as session:
            batch = list(_batch(session, res_type, last_pk, batch_size))
            for pk, rtype, deleted, content in batch:
                writer.replace(session, pk, rtype, None if deleted else content)
                done += 0 if deleted else 1
        if len(batch) < batch_size:
            return done
        last_pk = batch[-1][0]


def _batch(
    session: Session, res_type: str | None, after_pk: int, size: int
) -> Iterator[tuple[int, str, bool, dict[str, Any]]]:
    stmt = (
        sa.select(resource.c.pk, resource.c.res_type, resource.c.deleted, resource.c.content)
        .where(resource.c.pk > after_pk)
        .order_by(resource.c.pk)
        .limit(size)
    )
    if res_type is not None:
        stmt = stmt.where(resource.c.res_type == res_type)
    for row in session.execute(stmt):
        yield int(row.pk), str(row.res_type), bool(row.deleted), row.content


__all__ = ["SearchIndexWriter", "is_first_version", "reindex_all"]
