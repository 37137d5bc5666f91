"""Result shaping: _summary, _elements, POST _search, system search, errors
(https://hl7.org/fhir/R4/search.html#summary, #elements, #errors)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.integration.search.conftest import Fhir, observation, patient

SUBSETTED = "SUBSETTED"


def full_patient() -> dict[str, object]:
    return patient(
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">山田</div>'},
        name=[{"family": "山田"}],
        gender="female",
        birthDate="1940-01-01",
        photo=[{"contentType": "image/png", "data": "iVBORw0KGgo="}],
        maritalStatus={"text": "既婚"},
    )


def tags(resource: dict[str, object]) -> list[str]:
    meta = resource.get("meta") or {}
    return [t["code"] for t in meta.get("tag", [])]  # type: ignore[attr-defined]


def test_summary_true_keeps_summary_elements(fhir: Fhir) -> None:
    fhir.create(full_patient())
    (entry,) = fhir.search("Patient?_summary=true")["entry"]
    r = entry["resource"]
    assert {"name", "gender", "birthDate", "id", "meta"} <= set(r)
    assert "photo" not in r and "text" not in r and "maritalStatus" not in r
    assert SUBSETTED in tags(r)


def test_summary_text(fhir: Fhir) -> None:
    fhir.create(full_patient())
    (entry,) = fhir.search("Patient?_summary=text")["entry"]
    assert set(entry["resource"]) == {"resourceType", "id", "meta", "text"}
    assert SUBSETTED in tags(entry["resource"])


def test_summary_data_drops_text(fhir: Fhir) -> None:
    fhir.create(full_patient())
    (entry,) = fhir.search("Patient?_summary=data")["entry"]
    assert "text" not in entry["resource"] and "photo" in entry["resource"]
    assert SUBSETTED in tags(entry["resource"])


def test_summary_count(fhir: Fhir) -> None:
    fhir.create(full_patient())
    fhir.create(full_patient())
    bundle = fhir.search("Patient?_summary=count")
    assert bundle["total"] == 2 and "entry" not in bundle


def test_summary_false_is_the_whole_resource(fhir: Fhir) -> None:
    pid = fhir.create(full_patient())
    (entry,) = fhir.search("Patient?_summary=false")["entry"]
    assert entry["resource"] == fhir.client.get(f"/fhir/Patient/{pid}").json()


def test_elements(fhir: Fhir) -> None:
    fhir.create(full_patient())
    (entry,) = fhir.search("Patient?_elements=gender,birthDate")["entry"]
    r = entry["resource"]
    assert set(r) == {"resourceType", "id", "meta", "gender", "birthDate"}
    assert SUBSETTED in tags(r)


def test_elements_keep_mandatory_elements(fhir: Fhir) -> None:
    fhir.create(observation(valueString="x"))
    (entry,) = fhir.search("Observation?_elements=valueString")["entry"]
    # status and code are mandatory in Observation
    assert {"status", "code", "valueString"} <= set(entry["resource"])


def test_search_by_post(fhir: Fhir, client: TestClient) -> None:
    pid = fhir.create(patient(name=[{"family": "ヤマダ"}]))
    fhir.create(patient(name=[{"family": "サトウ"}]))
    resp = client.post(
        "/fhir/Patient/_search",
        content="name=%E3%82%84%E3%81%BE%E3%81%A0",  # やまだ
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200
    assert [e["resource"]["id"] for e in resp.json()["entry"]] == [pid]


def test_system_search_with_type(fhir: Fhir) -> None:
    pid = fhir.create(patient())
    oid = fhir.create(observation(f"Patient/{pid}"))
    fhir.create({"resourceType": "Organization", "name": "x"})
    assert fhir.ids("?_type=Patient,Observation") == {pid, oid}
    assert fhir.ids(f"?_id={pid}") == {pid}


def test_unknown_parameter_is_400(fhir: Fhir) -> None:
    assert "nosuch" in fhir.error("Patient?nosuch=1")


def test_unsupported_parameter_is_400(fhir: Fhir) -> None:
    assert "_text" in fhir.error("Patient?_text=x")


def test_lenient_unknown_parameter_is_ignored(fhir: Fhir) -> None:
    pid = fhir.create(patient())
    bundle = fhir.search("Patient?nosuch=1", prefer="handling=lenient")
    assert [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"] == [pid]


def test_capability_statement_lists_search_parameters(fhir: Fhir, client: TestClient) -> None:
    cap = client.get("/fhir/metadata").json()
    rest = cap["rest"][0]
    pat = next(r for r in rest["resource"] if r["type"] == "Patient")
    by_name = {p["name"]: p for p in pat["searchParam"]}
    assert by_name["birthdate"]["type"] == "date"
    assert by_name["birthdate"]["definition"] == (
        "http://hl7.org/fhir/SearchParameter/individual-birthdate"
    )
    assert "jp-kana-sort" in by_name and "_lastUpdated" in by_name
    assert "_text" not in by_name
    assert "+09:00" in rest["documentation"]
    assert "_count" in rest["documentation"] and "500" in rest["documentation"]
    ops = {o["name"] for o in pat.get("operation", [])}
    assert "everything" in ops


@pytest.mark.parametrize(
    "query",
    [
        "Patient?name=a%00b",
        "Patient?_count=%C2%B2",
        "Patient?birthdate=2013-01-01T10:00:00%2B25:00",
        "Patient?birthdate=2013-13",
        "RiskAssessment?probability=1e999",
        "Patient?_cursor=eyJmIjoxLCJ2IjpbWyJzIiwieCJdXSwicCI6MSwiYiI6MX0",  # wrong key count
        "Patient?_sort=birthdate&_cursor=eyJmIjoxLCJ2IjpbWyJzIiwieCJdXSwicCI6MSwiYiI6MX0",
        "Patient?_cursor=eyJmIjoxLCJ2IjpbXSwicCI6OTk5OTk5OTk5OTk5OTk5OTk5OTk5LCJiIjoxfQ",
        "Patient?_has:Observation=1",
        "Patient?subject.name=x",
        "Observation?subject.name.family.given.x=1",
    ],
)
def test_odd_input_is_400_never_500(fhir: Fhir, query: str) -> None:
    assert fhir.error(query)
