"""Rows inserted at the end of the unit of work: one multi-row INSERT per table.

A transaction Bundle of 100 entries writes about 400 search-index rows and 100 outbox rows;
sent one statement per resource that is 500 round trips. Writers call :func:`defer`; the rows
reach the database just before the transaction commits, or earlier when a reader calls
:func:`flush` (the search engine does before every query, so a write is searchable inside
its own transaction). Rows are never lost to a savepoint: those deferred inside a savepoint
that rolls back go with it, and those deferred before it but flushed inside it are sent
again. An outer rollback drops everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, SessionTransaction

_KEY = "renkei.pending"
_CACHES = "renkei.unit_caches"


@dataclass
class _Pending:
    rows: list[tuple[sa.Table, dict[str, Any]]] = field(default_factory=list)
    #: rows[:flushed] are in the database (within the current transaction)
    flushed: int = 0
    #: savepoint -> (len(rows), flushed) when it began
    marks: dict[int, tuple[int, int]] = field(default_factory=dict)


def _pending(session: Session) -> _Pending:
    p: _Pending | None = session.info.get(_KEY)
    if p is None:
        p = session.info[_KEY] = _Pending()
    return p


def defer(session: Session, table: sa.Table, rows: Iterable[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``table`` before this session's transaction commits."""
    _pending(session).rows.extend((table, row) for row in rows)


def discard(session: Session, predicate: Callable[[sa.Table, dict[str, Any]], bool]) -> None:
    """Forget unsent rows matching ``predicate`` (a resource re-indexed twice in one unit)."""
    p: _Pending | None = session.info.get(_KEY)
    if p is None or p.flushed == len(p.rows):
        return
    kept = [item for item in p.rows[p.flushed :] if not predicate(*item)]
    del p.rows[p.flushed :]
    p.rows.extend(kept)


def flush(session: Session) -> None:
    """Send the unsent rows now, grouped by table in first-seen order."""
    p: _Pending | None = session.info.get(_KEY)
    if p is None or p.flushed == len(p.rows):
        return
    by_table: dict[sa.Table, list[dict[str, Any]]] = {}
    for table, row in p.rows[p.flushed :]:
        by_table.setdefault(table, []).append(row)
    p.flushed = len(p.rows)
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        for table, rows in by_table.items():
            for group in _by_keys(rows):  # executemany wants the same keys in every row
                conn.execute(table.insert(), group)
        return
    small = []
    for table, rows in by_table.items():
        if len(rows) >= _COPY_MIN and _uniform(rows):
            _copy(conn, table, list(rows[0]), rows)
        else:
            small.append((table, rows))
    if small:
        _pipelined(conn, small)


#: from this many rows on, PostgreSQL gets them by COPY (a pipelined executemany still sends
#: one prepared statement per row: most of a 100-entry transaction's time); fewer go in one
#: pipeline for all tables, a single round trip
_COPY_MIN = 50


def _uniform(rows: list[dict[str, Any]]) -> bool:
    keys = rows[0].keys()
    return all(row.keys() == keys for row in rows)


def _bound(
    conn: sa.Connection, table: sa.Table, keys: list[str], rows: list[dict[str, Any]]
) -> list[list[Any]]:
    """The rows' values as SQLAlchemy would bind them (JSON, UTC instants...)."""
    procs = [table.c[k].type.bind_processor(conn.dialect) for k in keys]
    return [
        [
            proc(row.get(k)) if proc is not None and row.get(k) is not None else row.get(k)
            for k, proc in zip(keys, procs, strict=True)
        ]
        for row in rows
    ]


def _pipelined(conn: sa.Connection, batches: list[tuple[sa.Table, list[dict[str, Any]]]]) -> None:
    """One ``executemany`` per table, all in one psycopg pipeline: one round trip."""
    quote = conn.dialect.identifier_preparer.quote
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.pipeline(), driver.cursor() as cur:
        for table, rows in batches:
            for group in _by_keys(rows):
                keys = list(group[0])
                sql = (
                    f"INSERT INTO {quote(table.name)} ({', '.join(quote(k) for k in keys)}) "
                    f"VALUES ({', '.join(['%s'] * len(keys))})"
                )
                cur.executemany(sql, _bound(conn, table, keys, group))


def _by_keys(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())


def _copy(
    conn: sa.Connection, table: sa.Table, keys: list[str], rows: list[dict[str, Any]]
) -> None:
    """``COPY table (keys) FROM STDIN``, each value bound as SQLAlchemy would bind it."""
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(k) for k in keys)
    driver = conn.connection.driver_connection
    assert driver is not None
    with (
        driver.cursor() as cur,
        cur.copy(f"COPY {quote(table.name)} ({columns}) FROM STDIN") as copy,
    ):
        for values in _bound(conn, table, keys, rows):
            copy.write_row(values)


def unit_cache(session: Session, name: str) -> dict[Any, Any]:
    """A dict for answers that hold for this transaction only (e.g. "may this organisation
    write that patient"): emptied when the transaction ends or any part of it rolls back."""
    caches: dict[str, dict[Any, Any]] = session.info.setdefault(_CACHES, {})
    return caches.setdefault(name, {})


# -- transaction boundaries ---------------------------------------------------------------


def _before_commit(session: Session) -> None:
    if _KEY in session.info and not session.in_nested_transaction():
        flush(session)


def _after_transaction_create(session: Session, trans: SessionTransaction) -> None:
    p: _Pending | None = session.info.get(_KEY)
    if trans.nested and p is not None:
        p.marks[id(trans)] = (len(p.rows), p.flushed)


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    session.info.pop(_CACHES, None)
    p: _Pending | None = session.info.get(_KEY)
    if p is None:
        return
    if not previous.nested:
        session.info.pop(_KEY, None)
        return
    length, flushed = p.marks.pop(id(previous), (0, 0))
    del p.rows[length:]
    # rows deferred before the savepoint but sent inside it were rolled back with it
    p.flushed = min(p.flushed, flushed)


def _after_transaction_end(session: Session, trans: SessionTransaction) -> None:
    if not trans.nested and trans.parent is None:
        session.info.pop(_CACHES, None)
        session.info.pop(_KEY, None)
    # a savepoint's mark stays until the unit ends: this event comes before the rollback
    # event of the same savepoint, and a new savepoint overwrites a reused id's mark


sa.event.listen(Session, "before_commit", _before_commit)
sa.event.listen(Session, "after_transaction_create", _after_transaction_create)
sa.event.listen(Session, "after_soft_rollback", _after_soft_rollback)
sa.event.listen(Session, "after_transaction_end", _after_transaction_end)


__all__ = ["defer", "discard", "flush", "unit_cache"]
