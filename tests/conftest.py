"""Shared fixtures: a real database per backend, an app over it, a movable clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from renkei.app import Services, build_services, create_app
from renkei.clock import ManualClock
from renkei.config import AuthSettings, Secret, Settings
from renkei.store.migrate import upgrade
from tests import authkit
from tests.dbs import fresh_postgres_database

#: argon2 at its cheapest: tests check behaviour, not hashing cost
FAST_AUTH = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
JPCORE_EXAMPLES = SHARED / "jpcore" / "examples"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'renkei.db'}"
        upgrade(url)
        yield url
    else:
        url = request.getfixturevalue("postgres_url")
        yield url
        _truncate(url)


def _truncate(url: str) -> None:
    import sqlalchemy as sa

    from renkei.store.schema import load_all_models, metadata

    load_all_models()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 4, 1, 0, 0, tzinfo=UTC))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=Secret(database_url), data_dir=tmp_path / "data", auth=FAST_AUTH)


@pytest.fixture
def services(settings: Settings, clock: ManualClock) -> Iterator[Services]:
    svc = build_services(settings, clock=clock)
    yield svc
    svc.db.dispose()


@pytest.fixture
def app(settings: Settings, services: Services) -> FastAPI:
    return create_app(settings, services=services)


@pytest.fixture
def client(app: FastAPI, services: Services) -> Iterator[TestClient]:
    """An HTTP client that carries a back-end token with ``system/*.cruds`` by default."""
    token = authkit.client_token(services, "system/*.cruds")
    with TestClient(
        app, base_url="http://testserver", headers={"Authorization": f"Bearer {token}"}
    ) as c:
        yield c


@pytest.fixture
def anon_client(app: FastAPI) -> Iterator[TestClient]:
    """An HTTP client without credentials (OAuth endpoints, 401 checks)."""
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c


@pytest.fixture
def make_token(services: Services) -> Callable[..., str]:
    """``make_token("system/Patient.rs")`` for a back end, or ``make_token(scope, user=u)``
    for a person made with ``authkit.create_user(services, role=...)``."""

    def make(scope: str = "system/*.cruds", *, user: authkit.TestUser | None = None) -> str:
        if user is None:
            return authkit.client_token(services, scope)
        return authkit.user_token(services, user, scope)

    return make


@pytest.fixture
def auth_client(app: FastAPI, make_token: Callable[..., str]) -> Callable[..., TestClient]:
    """``auth_client("user/Patient.rs", user=u)``: an HTTP client with that token."""

    def make(scope: str = "system/*.cruds", *, user: authkit.TestUser | None = None) -> TestClient:
        token = make_token(scope, user=user)
        return TestClient(
            app, base_url="http://testserver", headers={"Authorization": f"Bearer {token}"}
        )

    return make
