"""Engine and sessions for SQLite (embedded) and PostgreSQL (production).

SQLite runs in WAL mode; a write unit of work starts with ``BEGIN IMMEDIATE`` so that two
writers queue on the database lock instead of failing half-way with ``database is locked``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import renkei.store.pending  # noqa: F401  (flushes deferred rows before every commit)


def insert_if_new(session: Session, table: sa.Table, values: dict[str, Any]) -> bool:
    """Insert one row unless it would break a unique constraint; True if it went in.

    ``INSERT ... ON CONFLICT DO NOTHING`` on both databases: a duplicate is an answer, not
    an error, so no savepoint is needed to keep the transaction usable (two round trips).
    """
    stmt = _insert_if_new(table, session.get_bind().dialect.name)
    return session.execute(stmt, values).first() is not None


@functools.cache
def _insert_if_new(table: sa.Table, dialect: str) -> sa.Executable:
    """Built once per table: values go in as parameters, so the compiled form is reused."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(sa.literal(1))


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    """Create an engine tuned for the dialect; creates the SQLite file's folder."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            echo=echo,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        _configure_sqlite(engine)
        return engine
    engine = sa.create_engine(
        url,
        echo=echo,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
    _configure_postgres(engine)
    return engine


def _configure_postgres(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # psycopg prepares a statement after 5 runs, and PostgreSQL then switches to a
        # generic plan that ignores the parameter values. For search over skewed index
        # tables (one patient's 50 rows vs a code shared by 100 000) that plan was 100x
        # slower (bench/search.py: 4 ms -> 400 ms), so every execution is planned with
        # its values; the statement stays prepared (no re-parse).
        # random_page_cost 1.1 instead of 4 (the common setting for SSDs and a cache that
        # holds the working set): at 4 an accurate count of 3 000 of 170 000 Observations
        # scanned all 500 000 resources in parallel instead of probing the 9 500
        # candidates' keys (bench/search.py total_accurate).
        with dbapi_conn.cursor() as cur:
            cur.execute("SET plan_cache_mode = force_custom_plan")
            cur.execute("SET random_page_cost = 1.1")
        dbapi_conn.commit()


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how each transaction starts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


class Database:
    """One engine and its session factory; the only place sessions come from."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self.is_sqlite = url.startswith("sqlite")

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any error.

        ``write=True`` matters on SQLite only: the transaction takes the write lock at BEGIN.
        """
        with self.engine.connect() as conn:
            conn.info["write"] = write
            session = Session(bind=conn, expire_on_commit=False)
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
                conn.info.pop("write", None)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
