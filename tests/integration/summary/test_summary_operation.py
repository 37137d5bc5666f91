"""``Patient/[id]/$summary`` and the printable view, through HTTP on both databases."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from renkei.app import Services
from renkei.demo.clinical import CONSENT_SCOPE, LOINC, OBS_CAT


def _post(client: TestClient, body: dict[str, Any]) -> str:
    resp = client.post(f"/fhir/{body['resourceType']}", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _patient_with_history(client: TestClient) -> str:
    pid = _post(
        client,
        {
            "resourceType": "Patient",
            "name": [{"family": "田中", "given": ["節子"]}],
            "birthDate": "1936-02-03",
        },
    )
    subject = {"reference": f"Patient/{pid}"}
    _post(
        client,
        {
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {"text": "慢性心不全"},
            "subject": subject,
        },
    )
    _post(
        client,
        {
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "resolved",
                    }
                ]
            },
            "code": {"text": "肺炎"},
            "subject": subject,
        },
    )
    _post(
        client,
        {
            "resourceType": "AllergyIntolerance",
            "code": {"text": "ペニシリン系抗菌薬"},
            "criticality": "high",
            "patient": subject,
        },
    )
    _post(
        client,
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "フロセミド錠20mg"},
            "subject": subject,
            "dosageInstruction": [{"text": "1回1錠 1日1回 朝食後"}],
        },
    )
    for i, temp in enumerate([36.8, 38.4]):
        _temperature(client, pid, f"2026-03-3{i}T21:00:00+09:00", temp)
    _post(
        client,
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "adr"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": subject,
            "policyRule": {"text": "人生会議"},
            "provision": {"code": [{"text": "心肺蘇生を希望しない（DNAR）"}]},
        },
    )
    return pid


def _section(bundle: dict[str, Any], code: str) -> dict[str, Any]:
    composition = bundle["entry"][0]["resource"]
    return next(s for s in composition["section"] if s["code"]["coding"][0]["code"] == code)


def test_summary_sections_hold_the_right_entries(client: TestClient) -> None:
    pid = _patient_with_history(client)
    resp = client.get(f"/fhir/Patient/{pid}/$summary")
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    assert bundle["type"] == "document"
    problems = _section(bundle, "11450-4")
    assert "慢性心不全" in problems["text"]["div"]
    assert "肺炎" not in problems["text"]["div"]  # resolved problems are not listed
    assert len(problems["entry"]) == 1
    assert "ペニシリン系抗菌薬" in _section(bundle, "48765-2")["text"]["div"]
    assert "フロセミド錠20mg — 1回1錠 1日1回 朝食後" in _section(bundle, "10160-0")["text"]["div"]
    vitals = _section(bundle, "8716-3")["text"]["div"]
    assert vitals.index("38.4") < vitals.index("36.8")  # newest first
    assert "DNAR" in _section(bundle, "42348-3")["text"]["div"]
    for section in bundle["entry"][0]["resource"]["section"]:
        ET.fromstring(section["text"]["div"])
    included = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"Composition", "Patient", "Condition", "AllergyIntolerance", "Observation"} <= included


def test_summary_counts_nothing(client: TestClient, services: Services) -> None:
    """The document shows no totals: no section may pay for a COUNT of its matches (the
    10 latest vital signs of a patient with 1,600 used to count all 1,600)."""
    pid = _patient_with_history(client)
    for n in range(6):  # one more than the section shows: a second page exists
        note = {"resourceType": "Communication", "status": "completed"}
        note |= {"subject": {"reference": f"Patient/{pid}"}, "sent": f"2026-03-2{n}T10:00:00Z"}
        _post(client, note | {"payload": [{"contentString": f"訪問記録 {n}"}]})
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(services.db.engine, "before_cursor_execute", record)
    try:
        assert client.get(f"/fhir/Patient/{pid}/$summary").status_code == 200
    finally:
        sa.event.remove(services.db.engine, "before_cursor_execute", record)
    assert any("fhir_resource" in s for s in statements)
    counts = [s for s in statements if "count(*)" in s.lower() and "fhir_resource" in s]
    assert not counts


def test_summary_of_unknown_patient_is_404(client: TestClient) -> None:
    assert client.get("/fhir/Patient/nobody/$summary").status_code == 404
    assert client.get("/fhir/Observation/x/$summary").status_code in (400, 404)


def test_summary_print_view(client: TestClient) -> None:
    pid = _patient_with_history(client)
    resp = client.get(f"/summary/{pid}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert "患者サマリー" in resp.text and "田中 節子" in resp.text
    assert "@media print" in resp.text
    assert client.get("/summary/nobody").status_code == 404


def _temperature(client: TestClient, pid: str, when: str, value: float) -> None:
    _post(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBS_CAT, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "8310-5", "display": "体温"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "℃", "system": "http://unitsofmeasure.org"},
        },
    )


def test_recent_vitals_come_from_the_last_90_days_else_the_latest_ever(
    client: TestClient,
) -> None:
    """The clock is 2026-04-01: a reading of 2026-03-30 is recent, those of 2025 are not."""
    seen_lately = _post(client, {"resourceType": "Patient", "name": [{"family": "近藤"}]})
    for day in range(1, 13):
        _temperature(client, seen_lately, f"2025-06-{day:02d}T09:00:00+09:00", 36.0 + day / 100)
    _temperature(client, seen_lately, "2026-03-30T09:00:00+09:00", 37.9)
    vitals = _section(client.get(f"/fhir/Patient/{seen_lately}/$summary").json(), "8716-3")
    assert len(vitals["entry"]) == 1 and "37.9" in vitals["text"]["div"]

    long_ago = _post(client, {"resourceType": "Patient", "name": [{"family": "遠藤"}]})
    for day in range(1, 13):
        _temperature(client, long_ago, f"2025-06-{day:02d}T09:00:00+09:00", 36.0 + day / 100)
    vitals = _section(client.get(f"/fhir/Patient/{long_ago}/$summary").json(), "8716-3")
    assert len(vitals["entry"]) == 10  # nothing recent: the ten latest ever, newest first
    assert vitals["text"]["div"].index("36.12") < vitals["text"]["div"].index("36.03")
