"""Shared fixtures: a real database per backend, an app over it, a movable clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from renkei.app import Services, build_services, create_app
from renkei.calls import CallSettings
from renkei.clock import ManualClock
from renkei.config import Secret, Settings
from renkei.store.migrate import upgrade
from tests.dbs import fresh_postgres_database

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
    return Settings(database_url=Secret(database_url), data_dir=tmp_path / "data")


@pytest.fixture
def services(settings: Settings, clock: ManualClock) -> Iterator[Services]:
    # the calls worker is driven by tests (run_once), not by a background loop
    svc = build_services(settings, clock=clock, call_settings=CallSettings(worker=False))
    yield svc
    svc.db.dispose()


@pytest.fixture
def client(settings: Settings, services: Services) -> Iterator[TestClient]:
    app = create_app(settings, services=services)
    with TestClient(app, base_url="http://testserver") as c:
        yield c
