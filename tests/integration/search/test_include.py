"""_include and _revinclude, with :iterate (https://hl7.org/fhir/R4/search.html#include)."""

from __future__ import annotations

from typing import Any

from tests.integration.search.conftest import Fhir, observation, patient


def modes(bundle: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in bundle.get("entry", []):
        r = e["resource"]
        out.setdefault(e["search"]["mode"], set()).add(f"{r['resourceType']}/{r['id']}")
    return out


def test_include_subject(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    p2 = fhir.create(patient())
    o1 = fhir.create(observation(f"Patient/{p1}"))
    o2 = fhir.create(observation(f"Patient/{p1}"))
    fhir.create(observation(f"Patient/{p2}"))
    bundle = fhir.search(f"Observation?subject=Patient/{p1}&_include=Observation:subject")
    assert modes(bundle) == {
        "match": {f"Observation/{o1}", f"Observation/{o2}"},
        "include": {f"Patient/{p1}"},
    }
    assert bundle["total"] == 2  # included resources are not counted
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert f"http://testserver/fhir/Patient/{p1}" in full_urls


def test_include_with_target_type(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    grp = fhir.create({"resourceType": "Group", "type": "person", "actual": True})
    fhir.create(observation(f"Patient/{p1}"))
    fhir.create(observation(f"Group/{grp}"))
    bundle = fhir.search("Observation?_include=Observation:subject:Patient")
    assert modes(bundle)["include"] == {f"Patient/{p1}"}


def test_include_of_missing_target_is_skipped(fhir: Fhir) -> None:
    o1 = fhir.create(observation("Patient/not-there"))
    bundle = fhir.search("Observation?_include=Observation:subject")
    assert modes(bundle) == {"match": {f"Observation/{o1}"}}


def test_revinclude(fhir: Fhir) -> None:
    p1 = fhir.create(patient(name=[{"family": "ヤマダ"}]))
    p2 = fhir.create(patient(name=[{"family": "サトウ"}]))
    o1 = fhir.create(observation(f"Patient/{p1}"))
    fhir.create(observation(f"Patient/{p2}"))
    bundle = fhir.search("Patient?name=やまだ&_revinclude=Observation:subject")
    assert modes(bundle) == {"match": {f"Patient/{p1}"}, "include": {f"Observation/{o1}"}}


def test_include_iterate(fhir: Fhir) -> None:
    # MedicationRequest -> Patient -> Practitioner (general practitioner), via :iterate
    doc = fhir.create({"resourceType": "Practitioner", "name": [{"family": "鈴木"}]})
    p1 = fhir.create(patient(generalPractitioner=[{"reference": f"Practitioner/{doc}"}]))
    mr = fhir.create(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "アムロジピン"},
            "subject": {"reference": f"Patient/{p1}"},
        }
    )
    plain = fhir.search("MedicationRequest?_include=MedicationRequest:patient")
    assert modes(plain)["include"] == {f"Patient/{p1}"}
    bundle = fhir.search(
        "MedicationRequest?_include=MedicationRequest:patient"
        "&_include:iterate=Patient:general-practitioner"
    )
    assert modes(bundle) == {
        "match": {f"MedicationRequest/{mr}"},
        "include": {f"Patient/{p1}", f"Practitioner/{doc}"},
    }


def test_revinclude_iterate(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    o1 = fhir.create(observation(f"Patient/{p1}"))
    prov = fhir.create(
        {
            "resourceType": "Provenance",
            "target": [{"reference": f"Observation/{o1}"}],
            "recorded": "2026-04-01T00:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/x"}}],
        }
    )
    bundle = fhir.search(
        f"Patient?_id={p1}&_revinclude=Observation:subject&_revinclude:iterate=Provenance:target"
    )
    assert modes(bundle)["include"] == {f"Observation/{o1}", f"Provenance/{prov}"}


def test_include_wildcard(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    enc = fhir.create(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "HH"},
            "subject": {"reference": f"Patient/{p1}"},
        }
    )
    fhir.create(observation(f"Patient/{p1}", encounter={"reference": f"Encounter/{enc}"}))
    bundle = fhir.search("Observation?_include=Observation:*")
    assert modes(bundle)["include"] == {f"Patient/{p1}", f"Encounter/{enc}"}


def test_include_needs_a_reference_parameter(fhir: Fhir) -> None:
    assert "reference parameter" in fhir.error("Observation?_include=Observation:code")
    assert "use :iterate" in fhir.error("Observation?_include=Patient:general-practitioner")
