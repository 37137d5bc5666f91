"""The audit log through HTTP: every access recorded, read as AuditEvent by auditors only,
the disclosure report, ``renkei audit verify`` on the log the API wrote (both databases)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from renkei.app import Services
from renkei.cli import main
from renkei.config import Settings
from tests.integration.auth.conftest import as_user, build_network, clinical, put


def _events(client: TestClient, query: str, who: str | None = None) -> list[dict[str, Any]]:
    resp = client.get(f"/fhir/AuditEvent?{query}", headers=as_user(who))
    assert resp.status_code == 200, resp.text
    return [e["resource"] for e in resp.json().get("entry", [])]


def _entities(event: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event.get("entity", []) if "what" in e}


def test_every_interaction_is_recorded_with_who_where_why(net_client: TestClient) -> None:
    build_network(net_client)
    who = as_user("org-b-nurse")
    assert net_client.get("/fhir/Observation/observation-p1", headers=who).status_code == 200
    assert (
        net_client.get("/fhir/Observation/observation-p1/_history/1", headers=who).status_code
        == 200
    )
    assert (
        net_client.get("/fhir/Observation/observation-p1/_history", headers=who).status_code == 200
    )
    search = net_client.get("/fhir/Observation?_id=observation-p1,observation-p2", headers=who)
    assert search.json()["total"] == 1
    body = {k: v for k, v in clinical("Observation", "x", "p1").items() if k != "id"}
    created = net_client.post("/fhir/Observation", json=body, headers=who).json()
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    patched = net_client.patch(
        f"/fhir/Observation/{created['id']}",
        content=json.dumps(patch),
        headers={**who, "Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200
    assert net_client.get("/fhir/Patient/p2", headers=who).status_code == 404  # hidden

    events = _events(net_client, "agent=org-b-nurse&_count=50")
    by_kind = [(e["subtype"][0]["code"], e["action"], e["outcome"]) for e in reversed(events)]
    assert by_kind == [
        ("read", "R", "0"),
        ("vread", "R", "0"),
        ("history", "R", "0"),
        ("search", "R", "0"),
        ("create", "C", "0"),
        ("patch", "U", "0"),
        ("read", "R", "4"),
    ]
    read = events[-1]
    assert read["agent"][0]["who"] == {"reference": "PractitionerRole/role-org-b-nurse"}
    assert read["agent"][0]["altId"] == "org-b-nurse"
    assert read["agent"][0]["role"] == [{"text": "nurse"}]
    assert read["agent"][0]["network"] == {"address": "testclient", "type": "2"}
    assert read["agent"][1]["who"] == {"reference": "Organization/org-b"}
    assert _entities(read) == {"Patient/p1", "Observation/observation-p1"}
    assert read["recorded"].startswith("2026-04-01T00:00:00")
    # the search recorded what it returned, not what it hid
    searched = next(e for e in events if e["subtype"][0]["code"] == "search")
    assert _entities(searched) == {"Patient/p1", "Observation/observation-p1"}
    # the refused read is recorded against the patient it tried to see
    denied = events[0]
    assert denied["outcome"] == "4" and _entities(denied) >= {"Patient/p2"}


def test_bundle_entries_are_recorded_and_rollback_is_marked(net_client: TestClient) -> None:
    build_network(net_client)
    ok = {k: v for k, v in clinical("Observation", "x", "p1").items() if k != "id"}
    bad = {k: v for k, v in clinical("Observation", "y", "p2").items() if k != "id"}
    txn = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": ok, "request": {"method": "POST", "url": "Observation"}},
            {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    resp = net_client.post("/fhir", json=txn, headers=as_user("org-b-doctor"))
    assert resp.status_code == 403
    events = _events(net_client, "agent=org-b-doctor")
    got = sorted((e["subtype"][0]["code"], e["outcome"], e.get("outcomeDesc", "")) for e in events)
    assert [g[:2] for g in got] == [("create", "4"), ("create", "4"), ("transaction", "4")]
    assert any("rolled back" in g[2] for g in got)
    # nothing of the transaction was stored
    assert net_client.get("/fhir/Observation?_id=x", headers=as_user(None)).json()["total"] == 0


def test_audit_event_is_for_auditors_and_read_only(net_client: TestClient) -> None:
    build_network(net_client)
    net_client.get("/fhir/Patient/p1", headers=as_user("org-a-doctor"))
    net_client.get("/fhir/Patient/p1", headers=as_user("org-b-nurse"))
    net_client.get("/fhir/Organization/org-c", headers=as_user("org-c-doctor"))
    net_client.get("/fhir/Patient/p2", headers=as_user("org-c-doctor"))  # 404, recorded
    assert net_client.get("/fhir/AuditEvent", headers=as_user("org-a-doctor")).status_code == 403
    # org-a's admin sees every access to its patients, whoever made it
    seen = _events(net_client, "patient=Patient/p1", "org-a-admin")
    people = {e["agent"][0].get("altId") for e in seen}
    assert people == {"operator", "org-a-doctor", "org-b-nurse"}  # set-up: the operator
    # org-c's admin sees its own organisation's accesses, nothing about p1
    theirs = _events(net_client, "", "org-c-admin")
    assert [e["agent"][0].get("altId") for e in theirs] == ["org-c-doctor"]
    # reading the audit log is itself recorded
    again = _events(net_client, "", "org-c-admin")
    assert [e["subtype"][0]["code"] for e in again] == ["search", "read"]
    assert _events(net_client, "patient=p1", "org-c-admin") == []
    # nobody writes AuditEvents through the API
    forged = {"resourceType": "AuditEvent", "recorded": "2026-04-01T00:00:00Z"}
    admin = as_user("org-a-admin")
    assert net_client.post("/fhir/AuditEvent", json=forged, headers=admin).status_code == 405
    first = seen[-1]["id"]
    assert (
        net_client.put(f"/fhir/AuditEvent/{first}", json=forged, headers=admin).status_code == 405
    )
    assert net_client.delete(f"/fhir/AuditEvent/{first}", headers=admin).status_code == 405
    one = net_client.get(f"/fhir/AuditEvent/{first}", headers=admin)
    assert one.status_code == 200 and one.json()["id"] == first


def test_audit_event_search_by_date_and_paging(net_client: TestClient, clock: Any) -> None:
    build_network(net_client)
    net_client.get("/fhir/Patient/p1", headers=as_user("org-a-doctor"))
    clock.advance(days=1)
    net_client.get("/fhir/Patient/p1", headers=as_user("org-a-nurse"))
    net_client.get("/fhir/Patient/p1", headers=as_user("org-a-nurse"))
    staff = "patient=p1&agent=org-a-doctor,org-a-nurse"
    later = _events(net_client, f"{staff}&date=ge2026-04-02T00:00:00Z")
    assert [e["agent"][0]["altId"] for e in later] == ["org-a-nurse", "org-a-nurse"]
    day = _events(net_client, f"{staff}&date=2026-04-01")  # a JST day
    assert [e["agent"][0]["altId"] for e in day] == ["org-a-doctor"]
    page = net_client.get(f"/fhir/AuditEvent?{staff}&_count=1", headers=as_user(None)).json()
    assert "total" not in page and len(page["entry"]) == 1  # not counted unless asked
    counted = f"/fhir/AuditEvent?{staff}&_count=1&_total=accurate"
    assert net_client.get(counted, headers=as_user(None)).json()["total"] == 3
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    second = net_client.get(nxt.replace("http://testserver", ""), headers=as_user(None)).json()
    assert second["entry"][0]["resource"]["id"] != page["entry"][0]["resource"]["id"]
    bad = net_client.get("/fhir/AuditEvent?nonsense=1", headers=as_user(None))
    assert bad.status_code == 400


def test_disclosure_report_lists_who_saw_the_record(net_client: TestClient) -> None:
    build_network(net_client)
    net_client.get("/fhir/Patient/p1", headers=as_user("org-b-nurse"))
    net_client.get("/fhir/Observation/observation-p1", headers=as_user("org-b-nurse"))
    net_client.get("/fhir/Patient/p1", headers=as_user("org-a-doctor"))
    net_client.get("/fhir/Patient/p1", headers=as_user("org-c-doctor"))  # refused: not listed
    resp = net_client.get("/fhir/Patient/p1/$disclosure", headers=as_user("org-a-admin"))
    assert resp.status_code == 200, resp.text
    rows = {}
    for access in resp.json()["parameter"]:
        parts = {p["name"]: p for p in access["part"]}
        rows[parts["subject"]["valueString"]] = parts
    assert set(rows) == {"org-b-nurse", "org-a-doctor", "operator"}  # operator: the set-up
    assert rows["org-b-nurse"]["count"]["valueInteger"] == 2
    assert rows["org-b-nurse"]["organization"]["valueReference"] == {
        "reference": "Organization/org-b"
    }
    assert (
        net_client.get("/fhir/Patient/p1/$disclosure", headers=as_user("org-a-doctor")).status_code
        == 403
    )
    assert (
        net_client.get("/fhir/Patient/p1/$disclosure", headers=as_user("org-c-admin")).status_code
        == 404
    )


def _cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[int, dict[str, Any]]:
    monkeypatch.setenv("RENKEI_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("RENKEI_DATA_DIR", str(settings.data_dir))
    capsys.readouterr()
    code = main(["audit", "verify", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return code, json.loads(out[0])


def test_audit_verify_cli_on_the_api_log(
    net_client: TestClient,
    settings: Settings,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    build_network(net_client)
    for who in ("org-a-doctor", "org-b-nurse", "org-c-doctor"):
        net_client.get("/fhir/Patient/p1", headers=as_user(who))
    code, report = _cli(settings, monkeypatch, capsys)
    assert code == 0 and report["ok"] is True
    assert report["records"] >= 3 and report["records"] == report["head_seq"]
    key = Path(settings.data_dir) / "audit-seal.key"
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
    with services.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_record SET subject = 'nobody' WHERE seq = 2"))
    code, report = _cli(settings, monkeypatch, capsys)
    assert code == 1
    assert report["ok"] is False and report["first_bad_seq"] == 2 and report["problems"]


def test_patient_data_is_not_served_when_it_cannot_be_audited(
    net_client: TestClient, services: Services
) -> None:
    build_network(net_client)
    with services.db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_head"))
    # Reads' records are appended in the background: the first read after the damage is
    # served and its record stays queued; once the writer has failed, reads are refused.
    net_client.get("/fhir/Patient/p2", headers=as_user("org-a-doctor"))
    writer = net_client.app.state.services.audit.writer  # type: ignore[attr-defined]
    assert not writer.drain(timeout=5)
    assert writer.failing is not None
    resp = net_client.get("/fhir/Patient/p1", headers=as_user("org-a-doctor"))
    assert resp.status_code == 500
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert "山田" not in resp.text
    # a write is refused too, and not applied
    put_resp = net_client.put(
        "/fhir/Observation/observation-p1",
        json=clinical("Observation", "observation-p1", "p1"),
        headers=as_user("org-a-doctor"),
    )
    assert put_resp.status_code == 500
    with services.db.engine.connect() as conn:
        version = conn.execute(
            sa.text("SELECT version_id FROM fhir_resource WHERE res_id = 'observation-p1'")
        ).scalar_one()
    assert version == 1
    _ = put  # set-up helper kept for symmetry with the other tests
