"""Query plans on PostgreSQL at a size where the planner prefers an index whenever one fits.

Each test here guards a query that once scanned a whole table and grew with it:

- vread and instance history filtered the versions table by (type, id), which has no
  index: every vread and every ``Patient/1/_history`` read all versions of the type (30 ms
  at 400,000 versions, and growing);
- ``_sort=-_lastUpdated`` ordered ``DESC NULLS LAST`` on a NOT NULL column, which a
  backward index scan cannot give: every such search sorted all resources of the type.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from bench.search import StatementRecorder, explain_statements
from renkei.app import Services
from renkei.clock import ManualClock
from renkei.store.indexing import NullIndexWriter
from renkei.store.repository import SqlRepository
from tests.conftest import _truncate

pytestmark = pytest.mark.postgres

ROWS = 20_000


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """PostgreSQL only: SQLite keeps no statistics to plan by."""
    yield postgres_url
    _truncate(postgres_url)


@pytest.fixture
def observations(services: Services) -> None:
    """ROWS Observations with two versions each, written straight into the tables."""
    with services.db.engine.begin() as conn:
        conn.exec_driver_sql(
            f"""INSERT INTO fhir_resource (res_type, res_id, version_id, last_updated, deleted,
                content)
            SELECT 'Observation', 'plan-' || g, 2, now() - g * interval '1 second', false,
                jsonb_build_object('resourceType', 'Observation', 'id', 'plan-' || g,
                    'status', 'final', 'code', jsonb_build_object('text', 'x'))
            FROM generate_series(1, {ROWS}) g"""
        )
        conn.exec_driver_sql(
            """INSERT INTO fhir_resource_version (resource_pk, version_id, res_type, res_id,
                last_updated, deleted, method, content)
            SELECT pk, v, res_type, res_id, last_updated, false, 'PUT', content
            FROM fhir_resource, generate_series(1, 2) v WHERE res_type = 'Observation'"""
        )
        conn.exec_driver_sql("ANALYZE fhir_resource, fhir_resource_version")


def _plans_of(services: Services, run: Any) -> list[dict[str, Any]]:
    """Run ``run``; EXPLAIN ANALYZE of each query it sent on the services' engine."""
    recorder = StatementRecorder(on=True)
    sa.event.listen(services.db.engine, "before_cursor_execute", recorder)
    try:
        run()
    finally:
        sa.event.remove(services.db.engine, "before_cursor_execute", recorder)
    plans = explain_statements(services.db, recorder.statements)
    assert plans, "no query was captured"
    return plans


def _scanned(plans: list[dict[str, Any]]) -> set[str]:
    return {table for plan in plans for table in plan["seq_scans"]}


@pytest.mark.usefixtures("observations")
def test_vread_and_instance_history_use_no_sequential_scan(services: Services) -> None:
    read: list[Any] = []

    def run() -> None:
        with services.db.session() as session:
            repo = _repo(session)
            read.append(repo.vread("Observation", "plan-12345", 1))
            read.append(repo.history("Observation", "plan-12345", count=10))

    plans = _plans_of(services, run)
    assert read[0].res_id == "plan-12345" and read[0].version_id == 1
    assert [e.version_id for e in read[1].entries] == [2, 1]
    assert "fhir_resource_version" not in _scanned(plans), plans


@pytest.mark.usefixtures("observations")
def test_newest_first_search_reads_the_index_backwards(
    client: TestClient, services: Services
) -> None:
    found: list[Any] = []

    def run() -> None:
        resp = client.get("/fhir/Observation?_sort=-_lastUpdated&_count=5&_total=none")
        assert resp.status_code == 200, resp.text
        found.extend(e["resource"]["id"] for e in resp.json()["entry"])

    plans = _plans_of(services, run)
    assert found == [f"plan-{n}" for n in range(1, 6)]  # plan-1 is the newest
    assert "fhir_resource" not in _scanned(plans), plans


def _repo(session: Session) -> SqlRepository:
    return SqlRepository(session, ManualClock(datetime(2026, 4, 1, tzinfo=UTC)), NullIndexWriter())
