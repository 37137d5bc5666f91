"""Writes keep the index tables in step, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from renkei.app import Services
from renkei.cli import main
from renkei.fhir.search.indexer import SearchIndexWriter
from renkei.store.models import INDEX_TABLES, idx_date, idx_reference, idx_string, idx_token

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "jpcore"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def put(client: TestClient, body: dict[str, Any]) -> Any:
    return client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers=FHIR_JSON)


def count_rows(services: Services, **where: Any) -> dict[str, int]:
    out = {}
    with services.db.session() as session:
        for kind, table in INDEX_TABLES.items():
            stmt = sa.select(sa.func.count()).select_from(table)
            for col, value in where.items():
                stmt = stmt.where(table.c[col] == value)
            out[kind] = int(session.execute(stmt).scalar_one())
    return out


def select(services: Services, table: sa.Table, *cols: str, **where: Any) -> list[tuple[Any, ...]]:
    with services.db.session() as session:
        stmt = sa.select(*(table.c[c] for c in cols))
        for col, value in where.items():
            stmt = stmt.where(table.c[col] == value)
        return sorted(tuple(r) for r in session.execute(stmt))


def test_services_use_the_search_index_writer(services: Services) -> None:
    assert isinstance(services.engine.indexer, SearchIndexWriter)


def test_write_indexes_rows_and_delete_clears_them(client: TestClient, services: Services) -> None:
    assert put(client, example("Patient-jp-patient-example-1")).status_code == 201
    counts = count_rows(services, res_type="Patient")
    assert counts["string"] >= 20 and counts["token"] >= 4 and counts["date"] == 1
    family = select(services, idx_string, "value_exact", "value_norm", param="family")
    assert family == [("ヤマダ", "やまだ"), ("山田", "山田")]
    birth = select(services, idx_date, "low", "high", param="birthdate")
    assert birth == [
        (
            datetime(1969, 12, 31, 15, tzinfo=UTC),
            datetime(1970, 1, 1, 14, 59, 59, 999999, tzinfo=UTC),
        )
    ]

    assert put(client, example("Observation-jp-observation-vitalsigns-example-1")).status_code in (
        200,
        201,
    )
    subject = select(
        services, idx_reference, "res_type", "target_type", "target_id", param="subject"
    )
    assert subject == [("Observation", "Patient", "jp-patient-example-1")]

    resp = client.delete("/fhir/Patient/jp-patient-example-1")
    assert resp.status_code in (200, 204)
    assert sum(count_rows(services, res_type="Patient").values()) == 0
    # the Observation's rows are untouched
    assert count_rows(services, res_type="Observation")["reference"] >= 3


def test_update_replaces_rows(client: TestClient, services: Services) -> None:
    body = example("Patient-jp-patient-example-1")
    put(client, body)
    body["name"] = [{"family": "佐藤", "given": ["花子"]}]
    body["gender"] = "female"
    assert put(client, body).status_code == 200
    assert select(services, idx_string, "value_exact", param="family") == [("佐藤",)]
    assert select(services, idx_token, "code", param="gender") == [("female",)]


def test_every_jp_core_example_indexes(client: TestClient, services: Services) -> None:
    accepted = 0
    for path in sorted(EXAMPLES.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        resp = put(client, body)
        assert resp.status_code < 500, (path.name, resp.text)
        if resp.status_code in (200, 201):
            accepted += 1
            with services.db.session() as session:
                pk = session.execute(
                    sa.text("SELECT pk FROM fhir_resource WHERE res_type = :t AND res_id = :i"),
                    {"t": body["resourceType"], "i": body["id"]},
                ).scalar_one()
            assert sum(count_rows(services, resource_pk=pk).values()) > 0, path.name
    assert accepted >= 30


def test_long_and_wide_values_are_truncated_not_refused(
    client: TestClient, services: Services
) -> None:
    body = {
        "resourceType": "Patient",
        "id": "long",
        "identifier": [{"system": "urn:x:" + "系" * 600, "value": "値" * 600}],
        "name": [{"family": "𠮷" * 1000}],
        "meta": {"source": "urn:x:" + "あ" * 2000},
        "generalPractitioner": [{"reference": "https://x.example/fhir/Practitioner/" + "a" * 100}],
    }
    resp = put(client, body)
    assert resp.status_code == 201, resp.text
    (family,) = select(services, idx_string, "value_exact", param="family")[0]
    assert family.startswith("𠮷") and len(family.encode()) <= 1000
    assert select(services, idx_reference, "target_type", param="general-practitioner") == [
        ("Practitioner",)
    ]


def test_reindex_command_rebuilds_rows(
    client: TestClient,
    services: Services,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put(client, example("Patient-jp-patient-example-1"))
    put(client, example("Observation-jp-observation-vitalsigns-example-1"))
    before = count_rows(services)
    with services.db.session(write=True) as session:
        for table in INDEX_TABLES.values():
            session.execute(table.delete())
    assert sum(count_rows(services).values()) == 0

    monkeypatch.setenv("RENKEI_DATABASE_URL", database_url)
    assert main(["reindex", "--json", "--batch", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "reindexed": 2}
    assert count_rows(services) == before

    assert main(["reindex", "--type", "Observation", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "reindexed": 1}
    assert count_rows(services) == before

    assert main(["reindex", "--type", "Nope", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_reindex_command_rebuilds_sharing_facts(
    client: TestClient,
    services: Services,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The facts are derived like the index rows: an upgrade that adds their tables to a
    populated database is followed by ``renkei reindex`` (docs/operations/deploy.md)."""
    from renkei.access.models import access_patient_owner

    org = client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "x"})
    body = {
        **example("Patient-jp-patient-example-1"),
        "managingOrganization": {"reference": f"Organization/{org.json()['id']}"},
    }
    put(client, body)
    owners = select(services, access_patient_owner, "patient_id", "organization_id")
    assert owners == [(body["id"], org.json()["id"])]
    with services.db.session(write=True) as session:
        session.execute(access_patient_owner.delete())

    monkeypatch.setenv("RENKEI_DATABASE_URL", database_url)
    assert main(["reindex", "--json"]) == 0
    capsys.readouterr()
    assert select(services, access_patient_owner, "patient_id", "organization_id") == owners


def test_migration_matches_index_table_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from renkei.store.models import metadata

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()

    def table_of(diff: Any) -> str:
        item = diff[0] if isinstance(diff, list) else diff
        for part in item[1:]:
            name = getattr(part, "name", None)
            table = getattr(part, "table", None)
            if table is not None:
                return str(table.name)
            if isinstance(name, str):
                return name
            if isinstance(part, str):
                return part
        return ""

    mine = [d for d in diffs if table_of(d).startswith("idx_")]
    assert mine == []
