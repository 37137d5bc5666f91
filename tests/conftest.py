"""Shared fixtures: a real database per backend, an app over it, a movable clock."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from renkei.app import Services, build_services, create_app
from renkei.calls import CallSettings
from renkei.clock import ManualClock
from renkei.config import AuthSettings, Secret, Settings
from renkei.fhir.policy import AllowAll
from renkei.store.migrate import upgrade
from tests import authkit
from tests.dbs import fresh_postgres_database

#: argon2 at its cheapest: tests check behaviour, not hashing cost
FAST_AUTH = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)


def _find_shared() -> Path:
    """The shared/ folder beside the checkout (main, a worktree, or CI's clone elsewhere).

    ``RENKEI_SHARED_DIR`` wins; otherwise the nearest ancestor of the repository that has a
    ``shared/jpcore`` folder.
    """
    import os

    configured = os.environ.get("RENKEI_SHARED_DIR")
    if configured:
        return Path(configured)
    repo = Path(__file__).resolve().parent.parent
    for folder in (repo, *repo.parents):
        if (folder / "shared" / "jpcore").is_dir():
            return folder / "shared"
    return repo.parent / "shared"


SHARED = _find_shared()
#: shared/jpcore/examples when shared/ is beside the checkout, else the copy kept in tests/data
JPCORE_EXAMPLES = next(
    (
        p
        for p in (SHARED / "jpcore" / "examples", Path(__file__).parent / "data" / "jpcore")
        if p.is_dir()
    ),
    SHARED / "jpcore" / "examples",
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per test session; each test gets a copy (migrating a fresh
    file for every test costs ~0.5 s)."""
    import sqlite3

    path = tmp_path_factory.mktemp("template") / "renkei.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # fold the WAL into the file before copying it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database of this test's own (a copy of the session's template)."""
    path = tmp_path / "renkei.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
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
    """Services for FHIR-engine tests: SMART scopes enforced, no sharing layer (every
    caller's organisation sees every patient). The sharing policy, the default of
    ``build_services``, has its own tests with their own services (tests/integration/auth).
    The calls worker is driven by tests (run_once), not by a background loop."""
    svc = build_services(
        settings, clock=clock, policy=AllowAll(), call_settings=CallSettings(worker=False)
    )
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
