"""Rows inserted at the end of the unit of work: one multi-row INSERT per table.

A transaction Bundle of 100 entries writes about 400 search-index rows and 100 outbox rows;
sent one statement per resource that is 500 round trips. Writers call :func:`defer`; the rows
reach the database just before the transaction commits, or earlier when a reader calls
:func:`flush` (the search engine does before every query, so a write is searchable inside
its own transaction). Rows are never lost to a savepoint: those deferred inside a savepoint
that rolls back go with it, and those deferred before it but flushed inside it are sent
again. An outer rollback drops everything.

Rows deferred with ``visible=True`` (resource rows, sharing facts: things any later query of
the unit may read) are also sent before the next statement run through the session, unless
that statement names the tables it reads (:func:`reads`) and none of them has such rows
waiting. A unit that only writes (a transaction Bundle of creates) thus sends everything at
once, while no query can miss an earlier write of its own transaction.

A value the database refuses while the rows are sent (a duplicate id, a value out of range)
is raised as the store error the immediate INSERT would have raised (``AlreadyExists``,
``Unstorable``); the transaction is then unusable and must be rolled back.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from renkei.store.errors import AlreadyExists, Unstorable

_KEY = "renkei.pending"
_CACHES = "renkei.unit_caches"
#: execution option naming the tables a statement reads (see :func:`reads`)
_READS = "renkei_reads"


@dataclass
class _Pending:
    rows: list[tuple[sa.Table, dict[str, Any]]] = field(default_factory=list)
    #: rows[:flushed] are in the database (within the current transaction)
    flushed: int = 0
    #: savepoint -> (len(rows), flushed) when it began
    marks: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: tables whose rows must be sent before any statement that may read them
    visible: set[sa.Table] = field(default_factory=set)
    #: whether rows[flushed:] holds a row of a ``visible`` table
    guarded: bool = False


def _pending(session: Session) -> _Pending:
    p: _Pending | None = session.info.get(_KEY)
    if p is None:
        p = session.info[_KEY] = _Pending()
    return p


def defer(
    session: Session, table: sa.Table, rows: Iterable[dict[str, Any]], *, visible: bool = False
) -> None:
    """Insert ``rows`` into ``table`` before this session's transaction commits.

    ``visible``: the rows must be in the database before the session runs any statement
    that may read ``table`` (every statement that does not say otherwise, :func:`reads`).
    """
    p = _pending(session)
    before = len(p.rows)
    p.rows.extend((table, row) for row in rows)
    if visible and len(p.rows) > before:
        p.visible.add(table)
        p.guarded = True


def reads(*tables: sa.Table) -> dict[str, Any]:
    """Execution options saying a statement reads only ``tables``: rows deferred with
    ``visible=True`` into other tables may then stay unsent while it runs.

    >>> sorted(reads(sa.table("a"), sa.table("b"))["renkei_reads"])
    ['a', 'b']
    """
    return {_READS: frozenset(t.name for t in tables)}


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
    p.guarded = False
    # parents first (a resource before its versions, index rows and facts)
    tables = sa.schema.sort_tables(by_table)
    conn = session.connection()
    with _refused():
        if conn.dialect.name != "postgresql":
            for table in tables:
                for group in _by_keys(by_table[table]):  # executemany wants the same keys
                    conn.execute(table.insert(), group)
            return
        small: list[tuple[sa.Table, list[dict[str, Any]]]] = []
        for table in tables:
            for rows in _by_keys(by_table[table]):
                if len(rows) >= _COPY_MIN:
                    if _refers_to(table, small):  # its parents' few rows go in first
                        _pipelined(conn, small)
                        small = []
                    _copy(conn, table, list(rows[0]), rows)
                else:
                    small.append((table, rows))
        if small:
            _pipelined(conn, small)


def _refers_to(table: sa.Table, sent_later: list[tuple[sa.Table, Any]]) -> bool:
    parents = {fk.column.table for fk in table.foreign_keys}
    return any(t in parents for t, _ in sent_later)


@contextmanager
def _refused() -> Iterator[None]:
    """The database's refusal of a deferred row as the store error its INSERT would give."""
    import psycopg

    try:
        yield
    except (sa.exc.IntegrityError, psycopg.errors.UniqueViolation) as exc:
        orig = getattr(exc, "orig", exc)
        if isinstance(exc, sa.exc.IntegrityError) and not _unique(orig):
            raise
        raise AlreadyExists(_already(orig)) from exc
    except (sa.exc.DataError, psycopg.errors.DataError) as exc:
        orig = getattr(exc, "orig", exc)
        detail = str(orig).splitlines()[0] if orig is not None else "bad value"
        raise Unstorable(f"a value of the resource cannot be stored: {detail}") from exc


def _unique(orig: Any) -> bool:
    import psycopg

    return isinstance(orig, psycopg.errors.UniqueViolation) or "UNIQUE" in str(orig)


def _already(orig: Any) -> str:
    """``Key (res_type, res_id)=(Patient, p1) already exists.`` -> ``Patient/p1 already
    exists``; the driver's first line otherwise."""
    diag = getattr(orig, "diag", None)
    detail = getattr(diag, "message_detail", None) or ""
    found = re.match(r"Key \(res_type, res_id\)=\(([^,]+), (.+)\) already exists", detail)
    if found:
        return f"{found.group(1)}/{found.group(2)} already exists"
    return f"a row already exists: {(detail or str(orig)).splitlines()[0]}"


#: from this many rows on, PostgreSQL gets them by COPY (a pipelined executemany still sends
#: one prepared statement per row: most of a 100-entry transaction's time); fewer go in one
#: pipeline for all tables, a single round trip
_COPY_MIN = 50


def _bound(
    conn: sa.Connection, table: sa.Table, keys: list[str], rows: list[dict[str, Any]]
) -> list[Any]:
    """The rows' values (sequences) as SQLAlchemy would bind them (JSON, UTC instants...).

    Only a few columns have a bind processor (JSON, instants); the others are taken as
    they are, which halves the time of a transaction Bundle's ~900 rows."""
    procs = [
        (i, proc)
        for i, k in enumerate(keys)
        if (proc := table.c[k].type.bind_processor(conn.dialect)) is not None
    ]
    get = operator.itemgetter(*keys)  # every row has exactly these keys (_by_keys)
    values: list[Any] = [(get(row),) for row in rows] if len(keys) == 1 else list(map(get, rows))
    if not procs:
        return values
    out: list[list[Any]] = []
    for row_values in values:
        bound = list(row_values)
        for i, proc in procs:
            if bound[i] is not None:
                bound[i] = proc(bound[i])
        out.append(bound)
    return out


def _pipelined(conn: sa.Connection, batches: list[tuple[sa.Table, list[dict[str, Any]]]]) -> None:
    """One ``executemany`` per table, all in one psycopg pipeline: one round trip."""
    quote = conn.dialect.identifier_preparer.quote
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.pipeline(), driver.cursor() as cur:
        for table, rows in batches:  # each batch's rows have the same keys
            keys = list(rows[0])
            sql = (
                f"INSERT INTO {quote(table.name)} ({', '.join(quote(k) for k in keys)}) "
                f"VALUES ({', '.join(['%s'] * len(keys))})"
            )
            cur.executemany(sql, _bound(conn, table, keys, rows))


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
    p.guarded = any(table in p.visible for table, _ in p.rows[p.flushed :])


def _before_statement(state: ORMExecuteState) -> None:
    """Send ``visible`` rows before a statement that may read their tables."""
    p: _Pending | None = state.session.info.get(_KEY)
    if p is None or not p.guarded:
        return
    named = state.execution_options.get(_READS)
    if named is not None:
        waiting = {table.name for table, _ in p.rows[p.flushed :] if table in p.visible}
        if waiting.isdisjoint(named):
            return
    flush(state.session)


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
sa.event.listen(Session, "do_orm_execute", _before_statement)


__all__ = ["defer", "discard", "flush", "reads", "unit_cache"]
