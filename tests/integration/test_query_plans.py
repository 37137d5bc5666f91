"""Query plans on PostgreSQL at a size where the planner prefers an index whenever one fits.

Each test here guards a query that once scanned a whole table and grew with it:

- vread and instance history filtered the versions table by (type, id), which has no
  index: every vread and every ``Patient/1/_history`` read all versions of the type (30 ms
  at 400,000 versions, and growing);
- ``_sort=-_lastUpdated`` ordered ``DESC NULLS LAST`` on a NOT NULL column, which a
  backward index scan cannot give: every such search sorted all resources of the type;
- an organisation's searches across its patients kept rows linked to no patient with
  ``pk NOT IN (every patient-linked row of the type)``, and ``:not``/``:missing`` were
  written the same way. Once that set no longer fits work_mem, PostgreSQL reads it again
  for every row: 12 s for one search at 300,000 Observations. They are correlated
  ``NOT EXISTS`` now, probed per row through an index when the hash does not fit.
  The tests force that case with a tiny work_mem and count the index rows read.
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
from renkei.app import Services, build_services
from renkei.auth.principal import Principal
from renkei.calls import CallSettings
from renkei.clock import ManualClock
from renkei.config import Settings
from renkei.fhir.context import FhirRequest, RequestContext
from renkei.store.indexing import NullIndexWriter
from renkei.store.repository import SqlRepository
from tests import authkit
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


PATIENTS = 2_000


@pytest.fixture
def shared(settings: Settings, clock: ManualClock) -> Iterator[Services]:
    """The sharing policy (not the suite's AllowAll) over PATIENTS patients, 20 of them
    owned by ``org-a``, and ROWS Observations (1 in 50 with code 8310-5, half of those of
    org-a's patients), written straight into the tables; every connection gets a work_mem
    too small for any hash."""
    svc = build_services(settings, clock=clock, call_settings=CallSettings(worker=False))
    sa.event.listen(
        svc.db.engine,
        "checkout",
        lambda dbapi, *_: dbapi.execute("SET work_mem = '64kB'"),
    )
    with svc.db.engine.begin() as conn:
        conn.exec_driver_sql(
            f"""INSERT INTO fhir_resource (res_type, res_id, version_id, last_updated, deleted,
                content)
            SELECT 'Patient', 'p' || g, 1, now(), false,
                jsonb_build_object('resourceType', 'Patient', 'id', 'p' || g)
            FROM generate_series(1, {PATIENTS}) g"""
        )
        conn.exec_driver_sql(
            """INSERT INTO access_patient_owner (resource_pk, patient_id, organization_id)
            SELECT pk, res_id, CASE WHEN mod(substr(res_id, 2)::int, 100) = 1 THEN 'org-a'
                ELSE 'org-b' END
            FROM fhir_resource WHERE res_type = 'Patient'"""
        )
        conn.exec_driver_sql(
            f"""INSERT INTO fhir_resource (res_type, res_id, version_id, last_updated, deleted,
                content)
            SELECT 'Observation', 'o' || g, 1, now(), false, jsonb_build_object(
                'resourceType', 'Observation', 'id', 'o' || g, 'status', 'final',
                'code', jsonb_build_object('text', 'x'),
                'subject', jsonb_build_object('reference', 'Patient/p' || (1 + mod(g, {PATIENTS}))))
            FROM generate_series(1, {ROWS}) g"""
        )
        conn.exec_driver_sql(
            f"""INSERT INTO idx_reference (resource_pk, res_type, param, target_type, target_id)
            SELECT pk, 'Observation', 'subject', 'Patient',
                'p' || (1 + mod(substr(res_id, 2)::int, {PATIENTS}))
            FROM fhir_resource WHERE res_type = 'Observation'"""
        )
        conn.exec_driver_sql(
            """INSERT INTO idx_token (resource_pk, res_type, param, system, code)
            SELECT pk, 'Observation', 'code', 'http://loinc.org',
                CASE WHEN mod(substr(res_id, 2)::int, 50) = 0 THEN '8310-5' ELSE '1234-5' END
            FROM fhir_resource WHERE res_type = 'Observation'"""
        )
        conn.exec_driver_sql("ANALYZE")
    yield svc
    svc.db.dispose()


@pytest.mark.parametrize(
    "query",
    [
        "code=http://loinc.org|8310-5",
        "code:not=http://loinc.org|1234-5",
        "status:missing=true",
    ],
)
def test_an_organisations_search_across_its_patients_reads_few_index_rows(
    shared: Services, query: str
) -> None:
    nurse = Principal("nurse-a", "user", organization_id="org-a", role="nurse",
                      scopes=frozenset({"user/*.rs"}))  # fmt: skip
    params = [tuple(query.split("=", 1)), ("_count", "10"), ("_total", "none")]
    found: list[str] = []

    def run() -> None:
        with shared.db.session() as session:
            resp = shared.engine.handle(
                session,
                FhirRequest("GET", "Observation", params, context=RequestContext(principal=nurse)),
            )
        assert resp.status == 200, resp.body
        found.extend(e["resource"]["subject"]["reference"] for e in resp.body.get("entry", []))

    plans = _plans_of(shared, run)
    assert found and all(int(ref.removeprefix("Patient/p")) % 100 == 1 for ref in found)
    # rows produced by all plan nodes, every loop: 4,700-14,000 here; the NOT IN plans
    # re-read their materialised sets per row: 600,000-2,000,000
    work = sum(p["rows_processed"] for p in plans)
    assert work < 2 * ROWS, plans


def test_audit_event_search_by_agent_reads_indexes_not_the_log(
    client: TestClient, services: Services
) -> None:
    """``agent`` matches four columns; with each indexed the log is never read whole, not
    even to count the matches. (Every row is the auditor's organisation's, so its own
    filter narrows nothing.)"""
    with services.db.engine.begin() as conn:
        conn.exec_driver_sql(
            f"""INSERT INTO audit_record (seq, recorded, subject, organization_id,
                practitioner_role_id, client_id, interaction, status, break_glass, body,
                prev_hash, hash, mac, key_id)
            SELECT 1000000 + g, now() - g * interval '1 second', 'user-' || mod(g, 500),
                '{authkit.TEST_ORG}', 'role-' || mod(g, 700), 'client-' || mod(g, 300),
                'read', 200, false, jsonb_build_object('recorded', now(), 'interaction', 'read',
                    'status', 200, 'client_id', 'client-' || mod(g, 300))::text, '', '', '', 'k'
            FROM generate_series(1, {ROWS}) g"""
        )
        # the chain's head after them, so the reads' own records append behind them
        conn.exec_driver_sql(
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, {1_000_000 + ROWS}, '') "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
        )
        conn.exec_driver_sql("ANALYZE audit_record")
    token = authkit.client_token(services, "system/AuditEvent.rs")
    found: list[Any] = []

    def run() -> None:
        resp = client.get(
            "/fhir/AuditEvent?agent=client-7&_count=5&_total=accurate",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 200, resp.text
        found.append(resp.json())

    plans = _plans_of(services, run)
    assert len(found[0]["entry"]) == 5 and found[0]["total"] == len(range(7, ROWS + 1, 300))
    assert "audit_record" not in _scanned(plans), plans
