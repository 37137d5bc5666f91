"""Resource rows deferred to the end of the unit of work (PostgreSQL: keys from the
sequence, rows sent by COPY with the index rows), on both databases: every query of the
unit still sees them, a refused id fails the whole unit with a clear 409, a rollback leaves
nothing, the audit chain verifies, and a transaction Bundle's statements do not grow with
its entries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from renkei.api.fhir import _run
from renkei.app import Services, build_services
from renkei.audit.chain import verify
from renkei.auth.principal import OPERATOR, Principal
from renkei.clock import ManualClock
from renkei.config import Settings
from renkei.fhir.context import FhirRequest, FhirResponse, RequestContext
from renkei.store import pending
from renkei.store.errors import AlreadyExists
from renkei.store.models import idx_token, resource, resource_version

SYS = "urn:oid:1.2.392.100495.20.3.51.11312345678"


def _patient(number: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYS, "value": number}],
        "name": [{"family": "山田", "given": ["花子"]}],
        **extra,
    }


def _observation(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 36.8, "unit": "Cel"},
    }


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _patients_with_readings(count: int, owner: str | None = None) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for n in range(count):
        url = f"urn:uuid:00000000-0000-4000-8000-{n:012d}"
        extra = {"managingOrganization": {"reference": f"Organization/{owner}"}} if owner else {}
        body = _patient(f"p{n:05d}", **extra)
        entries.append({"fullUrl": url, "resource": body, "request": _req("POST", "Patient")})
        for _ in range(4):
            entries.append({"resource": _observation(url), "request": _req("POST", "Observation")})
    return _transaction(*entries)


def _req(method: str, url: str) -> dict[str, str]:
    return {"method": method, "url": url}


def _post(services: Services, body: Any, principal: Any = OPERATOR) -> FhirResponse:
    """One HTTP request's unit of work (``api.fhir._run``: commit, audit) without HTTP."""
    req = FhirRequest(
        "POST",
        "",
        headers={"prefer": "return=minimal"},
        body=body,
        context=RequestContext(principal=principal, base_url="http://testserver/fhir"),
    )
    resp: FhirResponse = _run(services, req)
    return resp


def _count(services: Services, table: sa.Table) -> int:
    with services.db.session() as s:
        return int(s.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _chain_ok(services: Services) -> None:
    assert services.audit is not None
    services.audit.settle()
    with services.db.session() as s:
        report = verify(s, services.audit.key)
    assert report.ok, report.as_dict()
    assert report.records > 0


def test_a_query_in_the_unit_sees_the_resources_created_before_it(services: Services) -> None:
    repo_of = services.engine.repository
    with services.db.session(write=True) as s:
        repo_of(s).reserve(1)  # PostgreSQL: the rows wait for the end of the unit
        stored = repo_of(s).create(_patient("00001"))
        found = s.execute(sa.select(resource.c.pk).where(resource.c.res_id == stored.res_id))
        assert found.scalar_one() == stored.pk
        assert repo_of(s).read("Patient", stored.res_id).content == stored.content
        versions = s.execute(
            sa.select(resource_version.c.method).where(resource_version.c.resource_pk == stored.pk)
        )
        assert versions.scalars().all() == ["POST"]


def test_a_statement_naming_other_tables_leaves_deferred_rows_unsent(services: Services) -> None:
    if services.db.is_sqlite:
        pytest.skip("SQLite inserts resource rows at once")
    statements: list[str] = []
    listen = (services.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with services.db.session(write=True) as s:
        repo = services.engine.repository(s)
        repo.reserve(1)
        stored = repo.create(_patient("00002"))
        sa.event.listen(*listen)
        try:
            probe = sa.select(sa.literal(1)).execution_options(**pending.reads(idx_token))
            s.execute(probe)
            assert statements == [str(probe.compile(s.get_bind()))]
            assert s.info["renkei.pending"].flushed == 0, "the rows are still waiting"
            count = sa.select(sa.func.count()).select_from(resource)  # reads anything
            assert s.execute(count).scalar_one() == 1
        finally:
            sa.event.remove(*listen)
    assert stored.pk > 0 and _count(services, resource) == 1


@pytest.mark.parametrize("reserved", [0, 2], ids=["inserted", "deferred"])
def test_the_same_id_twice_in_one_unit_is_refused_and_nothing_is_kept(
    services: Services, reserved: int
) -> None:
    refused = pytest.raises(AlreadyExists, match="Patient/dup already exists")
    with refused, services.db.session(write=True) as s:
        repo = services.engine.repository(s)
        repo.reserve(reserved)
        repo.create(_patient("00003"), res_id="dup")
        repo.create(_patient("00004"), res_id="dup")
        pending.flush(s)  # refused here when deferred, else at the second INSERT
    assert _count(services, resource) == 0
    assert _count(services, resource_version) == 0
    assert _count(services, idx_token) == 0


def test_a_client_id_taken_by_a_concurrent_writer_fails_the_transaction_with_409(
    services: Services,
) -> None:
    """Another unit commits ``Patient/taken`` after this transaction looked for it and
    before its rows are sent: the whole transaction fails, naming the entry; nothing of it
    stays; both units' audit records chain."""
    if services.db.is_sqlite:
        pytest.skip("SQLite write transactions queue on the database lock: no such race")
    done: list[bool] = []

    def race(session: Any, ctx: RequestContext, stored: Any) -> None:
        if stored.reference != "Patient/taken" or done:
            return
        done.append(True)
        other = FhirRequest(
            "PUT",
            "Patient/taken",
            body=_patient("99999", id="taken"),
            context=RequestContext(principal=OPERATOR),
        )
        with services.db.session(write=True) as s2:
            assert services.engine.handle(s2, other).status == 201

    services.engine.write_listeners.append(race)
    try:
        resp = _post(
            services,
            _transaction(
                {
                    "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                    "resource": _patient("00005"),
                    "request": _req("POST", "Patient"),
                },
                {
                    "resource": _patient("00006", id="taken"),
                    "request": _req("PUT", "Patient/taken"),
                },
                {
                    "resource": _observation("urn:uuid:11111111-1111-4111-8111-111111111111"),
                    "request": _req("POST", "Observation"),
                },
            ),
        )
    finally:
        services.engine.write_listeners.remove(race)
    assert resp.status == 409, resp.body
    issue = resp.body["issue"][0] if resp.body else {}
    assert issue["code"] == "conflict"
    assert issue["diagnostics"] == "Bundle.entry[1]: Patient/taken already exists"
    with services.db.session() as s:  # only the concurrent writer's Patient is there
        rows = s.execute(sa.select(resource.c.res_type, resource.c.res_id)).all()
    assert [tuple(r) for r in rows] == [("Patient", "taken")]
    assert _count(services, resource_version) == 1
    _chain_ok(services)


def test_a_rolled_back_transaction_leaves_no_row_in_any_table(services: Services) -> None:
    body = _patients_with_readings(3)
    invalid = {**_observation("Patient/nowhere"), "valueQuantity": {"value": "hot"}}
    body["entry"].append({"resource": invalid, "request": _req("POST", "Observation")})
    resp = _post(services, body)
    assert resp.status == 422, resp.body
    assert "Bundle.entry[15]" in resp.body["issue"][0]["diagnostics"]
    for table in (resource, resource_version, idx_token):
        assert _count(services, table) == 0, table.name
    assert _post(services, _patients_with_readings(2)).status == 200
    assert _count(services, resource) == 10
    _chain_ok(services)


@pytest.fixture
def sharing(settings: Settings, clock: ManualClock) -> Iterator[Services]:
    """The default services: the sharing policy and its facts, the audit trail."""
    svc = build_services(settings, clock=clock)
    yield svc
    svc.db.dispose()


def _statements(services: Services, body: dict[str, Any], principal: Any) -> list[str]:
    seen: list[str] = []
    listen = (services.db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    sa.event.listen(*listen)
    try:
        resp = _post(services, body, principal)
    finally:
        sa.event.remove(*listen)
    assert resp.status == 200, resp.body
    return seen


def test_a_transaction_sends_as_many_statements_for_100_entries_as_for_10(
    sharing: Services,
) -> None:
    """Patients and their readings under the sharing policy: the resource rows, their
    versions, index rows and sharing facts go in bulk (COPY, below SQLAlchemy), the
    owner's right to write its new patients is not asked of the database."""
    from renkei.auth import service as auth_service

    with sharing.db.session(write=True) as s:
        org = auth_service.create_organization(
            s, sharing.auth, sharing.engine, name="テスト診療所", kind="clinic"
        )
    clinic = Principal(
        subject="c1",
        kind="client",
        organization_id=org,
        client_id="c1",
        scopes=frozenset({"system/*.cruds"}),
    )
    _statements(sharing, _patients_with_readings(1, org), clinic)  # warm-up
    small = _statements(sharing, _patients_with_readings(2, org), clinic)
    large = _statements(sharing, _patients_with_readings(20, org), clinic)
    if sharing.db.is_sqlite:
        assert _count(sharing, resource) == 1 + 5 + 10 + 100
        _chain_ok(sharing)
        return
    # nothing is asked per entry or per patient (no escalation rule is active)
    assert len(large) == len(small), large
    assert not any("access_patient_owner" in q for q in large)
    assert not any(q.lstrip().upper().startswith("WITH R AS") for q in large)
    assert _count(sharing, resource) == 1 + 5 + 10 + 100
    _chain_ok(sharing)


def test_a_resource_with_many_index_rows_goes_in_before_them(services: Services) -> None:
    # one deferred resource (sent in the pipeline) with more token rows than COPY's
    # threshold (sent by COPY): the resource row must reach the database first, or the
    # index rows' foreign key refuses them (bench/summary.py's demo-size patient)
    idents = [{"system": SYS, "value": f"id{n:03d}"} for n in range(60)]
    body = _patient("00100", identifier=idents)
    url = "urn:uuid:00000000-0000-4000-8000-000000000100"
    resp = _post(
        services,
        _transaction(
            {"fullUrl": url, "resource": body, "request": _req("POST", "Patient")},
            {"resource": _observation(url), "request": _req("POST", "Observation")},
        ),
    )
    assert resp.status == 200, resp.body
    with services.db.session() as s:
        tokens = s.execute(
            sa.select(sa.func.count())
            .select_from(idx_token)
            .where(idx_token.c.param == "identifier", idx_token.c.res_type == "Patient")
        ).scalar_one()
    assert tokens == 60 and _count(services, resource) == 2
    _chain_ok(services)
