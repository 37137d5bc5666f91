"""Deferred rows (renkei.store.pending) on both databases: sent at commit, never lost to a
savepoint, never kept after a rollback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from renkei.store import pending
from renkei.store.db import Database
from renkei.store.errors import Unstorable
from renkei.store.models import Json, UtcDateTime

_meta = sa.MetaData()
_table = sa.Table(
    "zz_pending_probe",
    _meta,
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("tag", sa.String(20), nullable=False),
    sa.Column("data", Json, nullable=True),
    sa.Column("at", UtcDateTime(), nullable=True),
    sa.Column("text", sa.String(40), nullable=True),  # a keyword as a column name
)
_other = sa.Table("zz_pending_other", _meta, sa.Column("n", sa.Integer, nullable=False))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    _meta.create_all(database.engine)
    try:
        yield database
    finally:
        _meta.drop_all(database.engine)
        database.dispose()


def _rows(db: Database, table: sa.Table = _table) -> list[int]:
    with db.session() as s:
        return sorted(r.n for r in s.execute(sa.select(table.c.n)))


def _defer(s: sa.orm.Session, *ns: int, tag: str = "x") -> None:
    pending.defer(s, _table, [{"n": n, "tag": tag} for n in ns])


def test_rows_are_sent_at_commit_one_insert_per_table(db: Database) -> None:
    statements: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with db.session(write=True) as s:
        _defer(s, 1, 2)
        pending.defer(s, _other, [{"n": 7}])
        _defer(s, 3)
        assert not statements, "nothing is sent before the commit"
    inserts = [q for q in statements if q.lstrip().upper().startswith("INSERT")]
    if db.is_sqlite:  # PostgreSQL gets them through one psycopg pipeline, below SQLAlchemy
        assert len(inserts) == 2
    assert _rows(db) == [1, 2, 3]
    assert _rows(db, _other) == [7]


def test_a_rolled_back_unit_sends_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session(write=True) as s:
        _defer(s, 1)
        raise RuntimeError("boom")
    with db.session(write=True) as s:  # the same machinery, a fresh unit
        _defer(s, 2)
    assert _rows(db) == [2]


def test_savepoints_keep_released_rows_and_drop_rolled_back_ones(db: Database) -> None:
    with db.session(write=True) as s:
        _defer(s, 1)
        with s.begin_nested():
            _defer(s, 2)
        with pytest.raises(RuntimeError), s.begin_nested():
            _defer(s, 3)
            raise RuntimeError("entry fails")
        _defer(s, 4)
    assert _rows(db) == [1, 2, 4]


def test_rows_flushed_inside_a_failed_savepoint_are_sent_again(db: Database) -> None:
    with db.session(write=True) as s:
        _defer(s, 1)
        with pytest.raises(RuntimeError), s.begin_nested():
            _defer(s, 2)
            pending.flush(s)  # a search inside the savepoint sends 1 and 2
            raise RuntimeError("entry fails")
    assert _rows(db) == [1]


def test_flush_makes_rows_visible_inside_the_unit_once(db: Database) -> None:
    with db.session(write=True) as s:
        _defer(s, 1)
        pending.flush(s)
        assert [r.n for r in s.execute(sa.select(_table.c.n))] == [1]
        pending.flush(s)  # nothing new: nothing sent twice
        _defer(s, 2)
    assert _rows(db) == [1, 2]


def test_discard_forgets_only_unsent_matching_rows(db: Database) -> None:
    with db.session(write=True) as s:
        _defer(s, 1, tag="old")
        pending.flush(s)
        _defer(s, 2, tag="old")
        _defer(s, 3, tag="new")
        pending.discard(s, lambda table, row: table is _table and row["tag"] == "old")
    assert _rows(db) == [1, 3]


def test_unit_cache_is_emptied_by_a_savepoint_rollback_and_at_the_end(db: Database) -> None:
    with db.session(write=True) as s:
        s.execute(sa.select(1))
        pending.unit_cache(s, "probe")["k"] = True
        with s.begin_nested():
            assert pending.unit_cache(s, "probe") == {"k": True}
        with pytest.raises(RuntimeError), s.begin_nested():
            raise RuntimeError("entry fails")
        assert pending.unit_cache(s, "probe") == {}
        pending.unit_cache(s, "probe")["k"] = True
        s.commit()
        assert pending.unit_cache(s, "probe") == {}


@pytest.mark.parametrize("count", [10, 60])
def test_rows_keep_their_types(db: Database, count: int) -> None:
    """Both PostgreSQL paths (a pipeline of inserts; COPY from 50 rows on): JSON, instants,
    NULLs, quotes, tabs and newlines come back as they went in."""
    at = datetime(2026, 4, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    rows = [
        {
            "n": n,
            "tag": "t\tab" if n % 2 else 'q"uote',
            "data": {"audience": ["PractitionerRole/1"], "n": n, "名前": "やまだ"},
            "at": at + timedelta(minutes=n),
            "text": None if n % 3 else "改行\nあり",
        }
        for n in range(count)
    ]
    with db.session(write=True) as s:
        pending.defer(s, _table, rows)
    with db.session() as s:
        got = {r.n: r for r in s.execute(sa.select(_table))}
    assert sorted(got) == list(range(count))
    for row in rows:
        stored = got[row["n"]]
        assert stored.tag == row["tag"]
        assert stored.data == row["data"]
        assert stored.at == row["at"]
        assert stored.text == row["text"]


def test_rows_of_one_table_may_name_different_columns(db: Database) -> None:
    with db.session(write=True) as s:
        pending.defer(s, _table, [{"n": 1, "tag": "a"}, {"n": 2, "tag": "b", "text": "x"}])
        pending.defer(s, _table, [{"n": 3, "tag": "c"}])
    with db.session() as s:
        rows = {r.n: r.text for r in s.execute(sa.select(_table.c.n, _table.c.text))}
    assert rows == {1: None, 2: "x", 3: None}


def test_many_rows_with_different_columns_go_in_by_their_columns(db: Database) -> None:
    """A COPY-sized group (60 rows naming ``text``) and a few rows that don't, in one unit."""
    many = [{"n": n, "tag": "m", "text": f"row {n}"} for n in range(60)]
    few = [{"n": 100 + n, "tag": "f"} for n in range(3)]
    with db.session(write=True) as s:
        pending.defer(s, _table, few[:1])
        pending.defer(s, _table, many)
        pending.defer(s, _table, few[1:])
    with db.session() as s:
        rows = {r.n: r.text for r in s.execute(sa.select(_table.c.n, _table.c.text))}
    assert rows == {**{r["n"]: r["text"] for r in many}, 100: None, 101: None, 102: None}


@pytest.mark.parametrize("count", [3, 60])
def test_a_value_too_long_is_refused_not_cut(db: Database, count: int) -> None:
    """Both PostgreSQL paths refuse what the one-row INSERT refuses (``tag`` is 20 long),
    with nothing written; SQLite keeps the whole value."""
    rows = [{"n": n, "tag": "x" * (21 if n == count - 1 else 5)} for n in range(count)]
    if db.engine.dialect.name != "postgresql":
        with db.session(write=True) as s:
            pending.defer(s, _table, rows)
        assert len(_rows(db)) == count
        return
    with pytest.raises(Unstorable), db.session(write=True) as s:
        pending.defer(s, _table, rows)
    assert _rows(db) == []
