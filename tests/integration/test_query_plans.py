"""vread and instance history reach a version through the primary key, on PostgreSQL.

They once filtered the versions table by (type, id), which has no index: every vread and
every ``Patient/1/_history`` scanned all versions of the type (30 ms at 400,000 versions,
and growing). The plans are checked on a table big enough for the planner to prefer an
index whenever one fits.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.clock import ManualClock
from renkei.store.db import Database
from renkei.store.indexing import NullIndexWriter
from renkei.store.repository import SqlRepository

pytestmark = pytest.mark.postgres

ROWS = 20_000


@pytest.fixture
def session(postgres_url: str) -> Iterator[Session]:
    db = Database(postgres_url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            f"""INSERT INTO fhir_resource (res_type, res_id, version_id, last_updated, deleted,
                content)
            SELECT 'Observation', 'plan-' || g, 2, now(), false,
                '{{"resourceType": "Observation", "status": "final"}}'::jsonb
            FROM generate_series(1, {ROWS}) g"""
        )
        conn.exec_driver_sql(
            """INSERT INTO fhir_resource_version (resource_pk, version_id, res_type, res_id,
                last_updated, deleted, method, content)
            SELECT pk, v, res_type, res_id, last_updated, false, 'PUT',
                jsonb_set(content, '{id}', to_jsonb(res_id))
            FROM fhir_resource, generate_series(1, 2) v WHERE starts_with(res_id, 'plan-')"""
        )
        conn.exec_driver_sql("ANALYZE fhir_resource, fhir_resource_version")
    try:
        with db.session() as s:
            yield s
    finally:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "DELETE FROM fhir_resource_version WHERE starts_with(res_id, 'plan-');"
                "DELETE FROM fhir_resource WHERE starts_with(res_id, 'plan-')"
            )
        db.dispose()


def _plans_of(session: Session, run: Any) -> list[str]:
    """Run ``run`` and return the JSON plan of each statement it sent (EXPLAIN of each)."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith("EXPLAIN"):
            seen.append((statement, params))

    engine = session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    plans = []
    raw = session.connection().connection.driver_connection
    assert raw is not None
    for statement, params in seen:
        cur = raw.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        plans.append(str(cur.fetchone()[0]))  # type: ignore[index]
    return plans


def test_vread_and_instance_history_use_no_sequential_scan(session: Session) -> None:
    repo = SqlRepository(session, ManualClock(datetime(2026, 4, 1, tzinfo=UTC)), NullIndexWriter())
    read: list[Any] = []
    plans = _plans_of(
        session,
        lambda: read.extend(
            [
                repo.vread("Observation", "plan-12345", 1),
                repo.history("Observation", "plan-12345", count=10),
            ]
        ),
    )
    assert read[0].res_id == "plan-12345" and read[0].version_id == 1
    assert [e.version_id for e in read[1].entries] == [2, 1]
    assert plans, "no statement was captured"
    for plan in plans:
        assert "Seq Scan" not in plan, plan
