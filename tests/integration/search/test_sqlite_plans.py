"""SQLite query plans of the searches $summary makes (SQLite keeps no statistics unless
ANALYZE runs, so it guesses): a patient-pinned search must find its rows by the patient's
reference and probe each by ``resource_pk``, never read every row of a shared value such
as ``category=vital-signs`` or every Observation of the database. With the wrong index a
$summary took 3 s instead of 24 ms once the database held other patients' vital signs."""

from __future__ import annotations

import sqlalchemy as sa

from renkei.auth.principal import OPERATOR
from renkei.clock import ManualClock
from renkei.fhir.context import RequestContext
from renkei.fhir.policy import AllowAll
from renkei.fhir.search.engine import SearchSettings, SqlSearchEngine
from renkei.fhir.search.indexer import SearchIndexWriter
from renkei.store.db import Database
from renkei.store.repository import SqlRepository
from tests.integration.search.conftest import observation, patient

VITALS = "http://terminology.hl7.org/CodeSystem/observation-category"


def test_a_pinned_patient_search_is_driven_by_the_patient(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    clock = ManualClock()
    try:
        with db.session(write=True) as session:
            repo = SqlRepository(session, clock, SearchIndexWriter())
            pids = [repo.create(patient()).res_id for _ in range(3)]
            for pid in pids:
                for _ in range(5):
                    body = observation(f"Patient/{pid}")
                    body["category"] = [{"coding": [{"system": VITALS, "code": "vital-signs"}]}]
                    repo.create(body)
        search = SqlSearchEngine(AllowAll(), SearchSettings(), clock=clock)
        statements: list[tuple[str, object]] = []
        listen = (db.engine, "before_cursor_execute", lambda *a: statements.append((a[2], a[3])))
        sa.event.listen(*listen)
        try:
            with db.session() as session:
                query = [
                    ("patient", pids[0]),
                    ("category", "vital-signs"),
                    ("_sort", "-date"),
                    ("_count", "10"),
                ]
                ctx = RequestContext(principal=OPERATOR, base_url="http://x/fhir")
                found = search.search(session, ctx, "Observation", query)
        finally:
            sa.event.remove(*listen)
        assert len(found["entry"]) == 5
        page = next(s for s in statements if "ORDER BY" in s[0])
        with db.engine.connect() as conn:
            plan = [
                row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + page[0], page[1])
            ]
        assert "SEARCH fhir_resource USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
        assert not any("ix_fhir_resource_type_updated" in line for line in plan), plan
        assert not any("ix_idx_token_res_type_param_code_system" in line for line in plan), plan
        assert any("ix_idx_token_by_resource" in line for line in plan), plan
    finally:
        db.dispose()
