"""Real databases for tests: a temp SQLite file, or a fresh PostgreSQL database.

PostgreSQL comes from ``RENKEI_TEST_POSTGRES_URL`` (e.g. postgresql://postgres@127.0.0.1/test).
Each test session creates its own database on that server and drops it afterwards, so
parallel runs and helpers never share tables. With ``RENKEI_REQUIRE_POSTGRES=1`` (set by
``.ci/run``) a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def postgres_admin_url() -> str | None:
    return os.environ.get("RENKEI_TEST_POSTGRES_URL") or None


def require_postgres() -> bool:
    return os.environ.get("RENKEI_REQUIRE_POSTGRES") == "1"


def _psycopg_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + _psycopg_url(url).split("://", 1)[1]


@contextmanager
def fresh_postgres_database(prefix: str = "renkei_t") -> Iterator[str]:
    """Create a new empty database; yield its SQLAlchemy URL; drop it afterwards."""
    import psycopg

    admin = postgres_admin_url()
    if admin is None:
        if require_postgres():
            pytest.fail("RENKEI_REQUIRE_POSTGRES=1 but RENKEI_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL tests need RENKEI_TEST_POSTGRES_URL")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg.connect(_psycopg_url(admin), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if require_postgres():
            pytest.fail(f"PostgreSQL at RENKEI_TEST_POSTGRES_URL does not answer: {exc}")
        pytest.skip(f"PostgreSQL does not answer: {exc}")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = _psycopg_url(admin).rpartition("/")
    try:
        yield _sqlalchemy_url(f"{base}/{name}")
    finally:
        with psycopg.connect(_psycopg_url(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
