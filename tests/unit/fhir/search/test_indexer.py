"""SearchIndexWriter is an IndexWriter; it replaces rows, skipping deletes only on creates."""

from __future__ import annotations

import inspect
from typing import Any

import sqlalchemy as sa

from renkei.fhir.search.indexer import SearchIndexWriter
from renkei.store import pending
from renkei.store.db import Database
from renkei.store.indexing import IndexWriter
from renkei.store.models import idx_token, resource


def test_search_index_writer_satisfies_the_protocol() -> None:
    writer: IndexWriter = SearchIndexWriter()
    expected = inspect.signature(IndexWriter.reindex)
    assert inspect.signature(type(writer).reindex).parameters.keys() == expected.parameters.keys()


def _patient(version: str, gender: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": version},
        "gender": gender,
    }


def test_reindex_replaces_rows_of_later_versions(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    writer = SearchIndexWriter()
    try:
        with db.session(write=True) as session:
            pk = session.execute(
                resource.insert()
                .values(
                    res_type="Patient",
                    res_id="p1",
                    version_id=1,
                    last_updated=sa.func.current_timestamp(),
                    deleted=False,
                    content={},
                )
                .returning(resource.c.pk)
            ).scalar_one()
            writer.reindex(session, pk, "Patient", _patient("1", "female"))
            writer.reindex(session, pk, "Patient", _patient("2", "male"))
            pending.flush(session)  # index rows are sent at commit or before a search
            genders = session.execute(
                sa.select(idx_token.c.code).where(idx_token.c.param == "gender")
            ).all()
            assert [g.code for g in genders] == ["male"]
            # replace() always clears, whatever the version says (renkei reindex uses it)
            writer.replace(session, pk, "Patient", _patient("1", "other"))
            pending.flush(session)  # index rows are sent at commit or before a search
            genders = session.execute(
                sa.select(idx_token.c.code).where(idx_token.c.param == "gender")
            ).all()
            assert [g.code for g in genders] == ["other"]
            writer.reindex(session, pk, "Patient", None)
            pending.flush(session)
            left = session.execute(sa.select(sa.func.count()).select_from(idx_token))
            assert left.scalar_one() == 0
    finally:
        db.dispose()
